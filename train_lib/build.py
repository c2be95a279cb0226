"""From a config to what every mode builds: the checked config, the model and its weights, the
dataset facts, the preprocessing, the train state and the compiled steps.

Training, evaluation, export, predict, benchmark and analyze all build through these functions,
so a config option reaches every mode or none.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from jax.sharding import Mesh
from ml_collections import ConfigDict

import input_pipeline
import models
from models import registry
from train_lib import checkpoint, config_checks, finetune, finite, steps
from train_lib import ema as ema_lib
from train_lib import loss_scale as loss_scale_lib
from train_lib import mesh as mesh_lib
from train_lib.errors import UserError
from train_lib.recipes import checks as recipe_checks
from train_lib.recipes import mixup as mixup_rule
from train_lib.state import SplitModel, TrainState

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


def validate(config: ConfigDict) -> None:
    """Value checks the config's types cannot express; fail before anything runs or is written."""
    config_checks.check(config, device_count=jax.device_count(), process_count=jax.process_count())


def model_kwargs(config: ConfigDict) -> dict[str, Any]:
    """The model.* options the variant's builder takes (None: the variant's default)."""
    kwargs = {}
    if config.model.drop_rate is not None:
        kwargs["drop_rate"] = config.model.drop_rate
    if config.model.drop_path_rate is not None:
        kwargs["drop_path_rate"] = config.model.drop_path_rate
    return kwargs


def _init_weights(config: ConfigDict) -> dict[str, np.ndarray] | None:
    if not config.init_from:
        return None
    flat, meta = models.weights.read(config.init_from)
    if meta.get("model") not in (None, config.model.name):
        raise UserError(
            f"{config.init_from} holds {meta['model']} weights, not {config.model.name}"
        )
    finite.check_weights(flat, config.init_from)
    return flat


def model(config: ConfigDict, fresh_head: bool = False) -> nnx.Module:
    """The configured model, with config.init_from's weights if set. fresh_head (training): a
    file of another class count loads all but the classifier."""
    try:
        weights, skipped = _init_weights(config), []
        if fresh_head:
            weights, skipped = finetune.split_head(config, weights, **model_kwargs(config))
        built = models.create(
            config.model.name,
            num_classes=config.model.num_classes,
            dtype=DTYPES[config.model.dtype],
            rngs=nnx.Rngs(config.seed),
            weights=None if skipped else weights,
            **model_kwargs(config),
        )
        return finetune.load_body(built, weights) if skipped else built
    except models.weights.WeightsMismatchError as e:
        raise UserError(f"{config.init_from}: {e}") from None


def latest_weights(config: ConfigDict, workdir: str) -> dict[str, np.ndarray]:
    """Params and BN statistics of the latest checkpoint (its EMA with config.export_ema), as
    canonical flat numpy arrays."""
    ckpt = checkpoint.Checkpointer.for_config(config, workdir)
    try:
        step = ckpt.latest_step()
        if step is None:
            raise UserError(
                f"no checkpoint in {ckpt.directory}; train first or pass "
                "--config.init_from=FILE.safetensors"
            )
        abstract = SplitModel(
            registry.abstract(
                config.model.name, num_classes=config.model.num_classes, **model_kwargs(config)
            )
        )
        replicated = mesh_lib.replicated(mesh_lib.make_mesh())
        target = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=replicated),
            {"params": abstract.initial_params, "batch_stats": abstract.initial_stats},
        )
        restored = ckpt.restore_weights(step, target, ema=config.export_ema)
    finally:
        ckpt.close()
    flat = {k: np.asarray(v) for k, v in {**restored["params"], **restored["batch_stats"]}.items()}
    finite.check_weights(flat, f"checkpoint {step} in {ckpt.directory}")
    return flat


def trained_model(config: ConfigDict, workdir: str) -> nnx.Module:
    """The model to evaluate or predict with: config.init_from if set, else the latest
    checkpoint in workdir."""
    if config.init_from:
        return model(config)
    return models.create(
        config.model.name,
        num_classes=config.model.num_classes,
        dtype=DTYPES[config.model.dtype],
        weights=latest_weights(config, workdir),
        **model_kwargs(config),
    )


def dataset_info(config: ConfigDict) -> input_pipeline.DatasetInfo:
    """The dataset's sizes and class names; its class count must fit model.num_classes."""
    data = input_pipeline.dataset_info(config.data)
    error, note = recipe_checks.class_count(
        config.model.num_classes, data.num_classes, config.data.source
    )
    if error:
        raise UserError(error)
    if note:
        logging.warning("%s", note)
    return data


def preprocessing(config: ConfigDict) -> dict[str, Any]:
    """On-device normalisation: the variant's mean/std, cast to the compute dtype."""
    info = models.info(config.model.name)
    return {"mean": info.mean, "std": info.std, "dtype": DTYPES[config.model.dtype]}


def eval_crop(config: ConfigDict) -> dict[str, Any]:
    """The eval resize-and-crop of the variant (crop_pct, interpolation)."""
    info = models.info(config.model.name)
    return {"crop_pct": info.crop_pct, "interpolation": info.interpolation}


def initial_state(
    config: ConfigDict,
    tx: optax.GradientTransformation,
    params: dict[str, jax.Array],
    batch_stats: dict[str, jax.Array],
) -> TrainState:
    """Step 0's train state, with the EMA (train.ema_decay) and the float16 loss scale on when
    the config asks for them."""

    def create(params: dict[str, jax.Array], batch_stats: dict[str, jax.Array]) -> TrainState:
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=params,
            batch_stats=batch_stats,
            opt_state=tx.init(params),
            rng=jax.random.key_data(jax.random.key(config.seed)),
            ema=ema_lib.init(params, batch_stats) if config.train.ema_decay else None,
            loss_scale=loss_scale_lib.init() if config.model.dtype == "float16" else None,
        )

    # One program: run eagerly, optax's zeros (and the EMA's copies) compile one small program
    # per distinct parameter shape (74 for HarDNet-39DS), each paid again in every process.
    return jax.jit(create)(params, batch_stats)


def train_step(config: ConfigDict, split: SplitModel, tx: optax.GradientTransformation, mesh: Mesh):
    """The jitted training step with every train.* option of the config (the benchmark and the
    memory analysis time and size this same step)."""
    return steps.make_train_step(
        split,
        tx,
        label_smoothing=config.train.label_smoothing,
        label_smoothing_mode=config.train.label_smoothing_mode,
        mesh=mesh,
        mode=config.parallel.mode,
        mixup=mixup_rule.spec(config),
        ema_decay=config.train.ema_decay,
        ema_warmup=config.train.ema_warmup,
        accum_steps=config.train.accum_steps,
        **preprocessing(config),
    )


def eval_step(config: ConfigDict, split: SplitModel):
    """The jitted evaluation step (masked metric sums and the confusion matrix)."""
    return steps.make_eval_step(split, **preprocessing(config))

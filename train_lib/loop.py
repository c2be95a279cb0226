"""train_and_evaluate / evaluate / export: the glue from config to checkpoints and metrics."""

from __future__ import annotations

import os
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from absl import logging
from flax import nnx
from ml_collections import ConfigDict

import input_pipeline
import models
from models import registry
from train_lib import checkpoint, config_checks, finetune, finite, optim, plots, run_config, steps
from train_lib import ema as ema_lib
from train_lib import loss_scale as loss_scale_lib
from train_lib import mesh as mesh_lib
from train_lib.errors import UserError
from train_lib.metrics import MetricWriter, progress_bar
from train_lib.recipes import checks as recipe_checks
from train_lib.recipes import mixup as mixup_rule
from train_lib.state import SplitModel, TrainState

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16, "float16": jnp.float16}


# --------------------------------------------------------------------------- setup
def validate(config: ConfigDict) -> None:
    """Value checks the config's types cannot express; fail before anything runs or is written."""
    config_checks.check(config, device_count=jax.device_count(), process_count=jax.process_count())


def _model_kwargs(config: ConfigDict) -> dict[str, Any]:
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


def build_model(config: ConfigDict, fresh_head: bool = False) -> nnx.Module:
    """fresh_head (training): a file of another class count loads all but the classifier."""
    try:
        weights, skipped = _init_weights(config), []
        if fresh_head:
            weights, skipped = finetune.split_head(config, weights, **_model_kwargs(config))
        model = models.create(
            config.model.name,
            num_classes=config.model.num_classes,
            dtype=DTYPES[config.model.dtype],
            rngs=nnx.Rngs(config.seed),
            weights=None if skipped else weights,
            **_model_kwargs(config),
        )
        return finetune.load_body(model, weights) if skipped else model
    except models.weights.WeightsMismatchError as e:
        raise UserError(f"{config.init_from}: {e}") from None


def _preprocessing(config: ConfigDict) -> dict[str, Any]:
    info = models.info(config.model.name)
    return {"mean": info.mean, "std": info.std, "dtype": DTYPES[config.model.dtype]}


def _eval_kwargs(config: ConfigDict) -> dict[str, Any]:
    info = models.info(config.model.name)
    return {"crop_pct": info.crop_pct, "interpolation": info.interpolation}


def _dataset_info(config: ConfigDict) -> input_pipeline.DatasetInfo:
    data = input_pipeline.dataset_info(config.data)
    error, note = recipe_checks.class_count(
        config.model.num_classes, data.num_classes, config.data.source
    )
    if error:
        raise UserError(error)
    if note:
        logging.warning("%s", note)
    return data


# --------------------------------------------------------------------------- evaluation
def run_eval(
    config: ConfigDict, eval_step, params, batch_stats, sharding, num_examples: int
) -> dict[str, Any]:
    """One pass over the eval split; every image counts exactly once (padding is masked).
    The result holds the confusion matrix as an array under "confusion" (see _report_eval)."""
    batch_size = config.train.eval_batch_size or config.train.batch_size
    batches = input_pipeline.eval_batches(
        config.data,
        global_batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        **_eval_kwargs(config),
    )
    total = None
    for batch in mesh_lib.prefetch_to_device(batches, sharding, config.data.prefetch):
        total = steps.accumulate(total, eval_step(params, batch_stats, batch))
    if total is None:
        raise UserError(f"the eval split of {config.data.source} is empty")
    total = mesh_lib.fetch_replicated(total)
    confusion = np.asarray(total.pop("confusion"))
    total = {k: float(v) for k, v in total.items()}
    count = int(round(total.pop("count")))
    if count != num_examples:
        raise RuntimeError(f"evaluated {count} images, the split has {num_examples}")
    return {
        "loss": total["loss"] / count,
        "top1": total["top1"] / count,
        "top5": total["top5"] / count,
        "examples": count,
        "confusion": confusion,
    }


def _report_eval(workdir: str, result: dict[str, Any], class_names, **extra: Any) -> None:
    """Pops the confusion matrix off `result` into eval_result.json (per-class accuracy) and
    plots/confusion.png (up to plots.CONFUSION_MAX_CLASSES classes), on process 0."""
    confusion = result.pop("confusion")
    if jax.process_index() == 0:
        plots.write_eval_report(workdir, result, confusion, class_names, **extra)


# --------------------------------------------------------------------------- training
def train_and_evaluate(
    config: ConfigDict, workdir: str, *, allow_config_change: bool = False
) -> dict[str, float]:
    """Trains (resuming from the latest committed checkpoint in workdir) and evaluates.

    Resuming checkpoints trained with a config that differs in a result-changing key is refused
    unless `allow_config_change`."""
    validate(config)
    run_config.check_workdir(workdir)
    data_info = _dataset_info(config)
    ckpt = checkpoint.Checkpointer(
        workdir,
        keep=config.train.keep_checkpoints,
        model_name=config.model.name,
        num_classes=config.model.num_classes,
    )
    try:
        start = ckpt.latest_step()
        if start is not None:  # refused before anything is written or built
            ckpt.check_model(start)
            run_config.check_resume(config, ckpt.directory, allow_change=allow_config_change)
        if jax.process_index() == 0:
            run_config.write(config, workdir)

        mesh = mesh_lib.make_mesh()
        data_sharding, replicated = mesh_lib.data_sharding(mesh), mesh_lib.replicated(mesh)
        split = SplitModel(build_model(config, fresh_head=True))
        per_epoch = optim.steps_per_epoch(
            config.data.num_train_examples or data_info.num_train_examples, config.train.batch_size
        )
        num_steps = optim.total_steps(config, per_epoch)
        schedule = optim.create_schedule(config, per_epoch, num_steps)
        tx = finetune.create_optimizer(config, schedule, split.initial_params, per_epoch)
        state = TrainState(
            step=jnp.zeros((), jnp.int32),
            params=split.initial_params,
            batch_stats=split.initial_stats,
            opt_state=tx.init(split.initial_params),
            rng=jax.random.key_data(jax.random.key(config.seed)),
            ema=ema_lib.init(split.initial_params, split.initial_stats)
            if config.train.ema_decay
            else None,
            loss_scale=loss_scale_lib.init() if config.model.dtype == "float16" else None,
        )
        state = jax.device_put(state, replicated)
        if start is not None:
            state = TrainState.from_dict(ckpt.restore(start, state.as_dict()))
            logging.warning("resumed from step %d of %s", start, ckpt.directory)
        start = int(start or 0)

        train_step = steps.make_train_step(
            split,
            tx,
            label_smoothing=config.train.label_smoothing,
            mesh=mesh,
            mode=config.parallel.mode,
            label_smoothing_mode=config.train.label_smoothing_mode,
            mixup=mixup_rule.spec(config),
            ema_decay=config.train.ema_decay,
            ema_warmup=config.train.ema_warmup,
            accum_steps=config.train.accum_steps,
            **_preprocessing(config),
        )
        eval_step = steps.make_eval_step(split, **_preprocessing(config))
        batches = input_pipeline.train_batches(
            config.data,
            global_batch_size=config.train.batch_size,
            seed=config.seed,
            start_step=start,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            interpolation=config.data.interpolation or models.info(config.model.name).interpolation,
        )
        batches = mesh_lib.prefetch_to_device(batches, data_sharding, config.data.prefetch)
    except BaseException:
        ckpt.close()  # see Checkpointer.close: exiting on this error must not race orbax's threads
        raise
    writer = MetricWriter(workdir, tensorboard=config.train.tensorboard, start_step=start)

    eval_every = max(int(config.train.eval_every_epochs * per_epoch), 1)
    last_step = num_steps
    if config.train.stop_after_steps:
        last_step = min(num_steps, start + config.train.stop_after_steps)
    result: dict[str, float] = {}
    bar = progress_bar(num_steps, start)
    sums, window_start, window_steps = None, time.perf_counter(), 0
    config_stored = False
    try:
        for step in range(start + 1, last_step + 1):
            state, metrics = train_step(state, next(batches))
            sums = steps.accumulate(sums, metrics)
            window_steps += 1
            if step % config.train.log_every_steps == 0 or step == last_step:
                sums = mesh_lib.fetch_replicated(sums)  # the only host sync of the loop
                elapsed = time.perf_counter() - window_start
                row = {
                    "loss": sums["loss"] / sums["count"],
                    "top1": sums["top1"] / sums["count"],
                    "lr": float(schedule(step - 1)),
                    "img_per_s": window_steps * config.train.batch_size / elapsed,
                }
                if "skipped" in sums:  # float16: overflowing steps are skipped, the scale halved
                    row["skipped_steps"] = sums["skipped"]
                    row["loss_scale"] = mesh_lib.fetch_replicated(state.loss_scale["scale"])
                if not np.isfinite(row["loss"]):
                    raise finite.diverged(step, ckpt.committed_step(), ckpt.directory)
                writer.write(step, "train", row)
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}",
                    lr=f"{row['lr']:.3g}",
                    img_s=f"{row['img_per_s']:.0f}",
                )
                sums, window_start, window_steps = None, time.perf_counter(), 0
            bar.update(1)
            if step % config.train.checkpoint_every_steps == 0 or step == last_step:
                # The save synchronises anyway; steps that do not save fetch nothing.
                if not finite.all_finite((state.params, state.batch_stats, metrics["loss"])):
                    raise finite.diverged(step, ckpt.committed_step(), ckpt.directory)
                if jax.process_index() == 0 and not config_stored:  # with its first checkpoint
                    run_config.store(config, ckpt.directory)
                    config_stored = True
                ckpt.save(step, state.as_dict())
            if step % eval_every == 0 or step == num_steps:
                result = run_eval(
                    config,
                    eval_step,
                    state.params,
                    state.batch_stats,
                    data_sharding,
                    data_info.num_eval_examples,
                )
                _report_eval(workdir, result, data_info.class_names, step=step)
                writer.write(step, "eval", result)
                if state.ema is not None:  # train.ema_decay: the average gets its own row
                    ema_result = run_eval(
                        config,
                        eval_step,
                        state.ema["params"],
                        state.ema["batch_stats"],
                        data_sharding,
                        data_info.num_eval_examples,
                    )
                    ema_result.pop("confusion", None)  # the report file is the raw weights'
                    writer.write(step, "eval_ema", ema_result)
                bar.write(
                    f"step {step}/{num_steps} eval: top1 {result['top1']:.4f} "
                    f"top5 {result['top5']:.4f} loss {result['loss']:.4f} "
                    f"({result['examples']} images)"
                )
        if last_step < num_steps:
            bar.write(f"stopped after step {last_step} of {num_steps}; run again to resume")
        elif start >= num_steps:
            result = run_eval(
                config,
                eval_step,
                state.params,
                state.batch_stats,
                data_sharding,
                data_info.num_eval_examples,
            )
            _report_eval(workdir, result, data_info.class_names, step=start)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    if jax.process_index() == 0:
        try:  # the run's results are saved; a failed picture must not fail it
            plots.write_curves(workdir)
        except Exception as e:  # noqa: BLE001
            logging.warning("could not draw %s/plots: %r", workdir, e)
    return result


# --------------------------------------------------------------------------- eval / export
def _latest_weights(config: ConfigDict, workdir: str) -> dict[str, np.ndarray]:
    """Params and BN statistics of the latest checkpoint, as canonical flat numpy arrays."""
    ckpt = checkpoint.Checkpointer(
        workdir,
        keep=config.train.keep_checkpoints,
        model_name=config.model.name,
        num_classes=config.model.num_classes,
    )
    try:
        step = ckpt.latest_step()
        if step is None:
            raise UserError(
                f"no checkpoint in {ckpt.directory}; train first or pass "
                "--config.init_from=FILE.safetensors"
            )
        abstract = SplitModel(
            registry.abstract(
                config.model.name, num_classes=config.model.num_classes, **_model_kwargs(config)
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


def evaluate(config: ConfigDict, workdir: str) -> dict[str, float]:
    """Evaluates config.init_from if set, else the latest checkpoint in workdir."""
    validate(config)
    run_config.check_workdir(workdir)
    data_info = _dataset_info(config)
    if config.init_from:
        model = build_model(config)
    else:
        model = models.create(
            config.model.name,
            num_classes=config.model.num_classes,
            dtype=DTYPES[config.model.dtype],
            weights=_latest_weights(config, workdir),
            **_model_kwargs(config),
        )
    split = SplitModel(model)
    mesh = mesh_lib.make_mesh()
    params, stats = jax.device_put(
        (split.initial_params, split.initial_stats), mesh_lib.replicated(mesh)
    )
    result = run_eval(
        config,
        steps.make_eval_step(split, **_preprocessing(config)),
        params,
        stats,
        mesh_lib.data_sharding(mesh),
        data_info.num_eval_examples,
    )
    _report_eval(
        workdir, result, data_info.class_names, weights=config.init_from or "latest checkpoint"
    )
    return result


def export(config: ConfigDict, workdir: str) -> str:
    """Writes <workdir>/export/<model>.safetensors (canonical weights) from the latest checkpoint."""
    validate(config)
    run_config.check_workdir(workdir)
    flat = _latest_weights(config, workdir)
    model = models.create(config.model.name, num_classes=config.model.num_classes, weights=flat)
    path = os.path.join(workdir, "export", f"{config.model.name}.safetensors")
    if jax.process_index() == 0:
        models.weights.save(model, path)
    return path

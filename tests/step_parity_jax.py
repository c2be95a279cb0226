"""The JAX side of the one-step parity (tests/test_step_parity.py), in float32 or float64.

    JAX_ENABLE_X64=1 python -m tests.step_parity_jax DIR CASE_ID...   # the float64 references

float32 runs our train step (train_lib.steps.make_train_step with train_lib.optim). float64 runs
the same model, loss formula and optax chain with every array in float64 (the train step casts
the input and the logits to float32, which a reference must not do); it says what "equal" can
mean for float32. DIR holds <model>.safetensors (canonical weights) and <model>.batch.npz
(uint8 NHWC images, labels, and `input`: the float32 normalised images exactly as our step makes
them, which every other side takes, so that all start from the same input: a ReLU network's
gradient moves by far more than the input's rounding where a unit sits at its kink). Each case
writes DIR/<case id>.jax32.npz or .jax64.npz.
"""

from __future__ import annotations

import sys
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import models
from tests import step_cases
from train_lib import mesh as mesh_lib
from train_lib import optim, steps
from train_lib.state import SplitModel, TrainState

# optax state field -> the name every side uses. RMSProp's momentum holds lr * g / rms as in
# PyTorch's RMSpropTF and MindSpore (ours negated: optax adds updates).
_FIELDS = {
    "sgd": {"trace": "momentum"},
    "rmsprop": {"nu": "mean_square", "trace": "rms_momentum"},
    "adamw": {"mu": "adam_m", "nu": "adam_v"},
}


def opt_leaves(opt_state, optimizer: str) -> dict[str, np.ndarray]:
    """{'opt:<field>:<param>': array} from an optax state over a dict of named params."""
    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(opt_state)[0]:
        names = [getattr(k, "name", getattr(k, "key", None)) for k in path]
        if len(names) < 2 or names[-2] not in _FIELDS[optimizer]:
            continue
        field = _FIELDS[optimizer][names[-2]]
        sign = -1.0 if field == "rms_momentum" else 1.0
        out[f"opt:{field}:{names[-1]}"] = sign * np.asarray(leaf)
    return out


def _ce64(logits, labels, smoothing: float, mode: str):
    k = logits.shape[-1]
    one_hot = jax.nn.one_hot(labels, k, dtype=logits.dtype)
    if mode == "others":
        targets = one_hot * (1 - smoothing) + (1 - one_hot) * (smoothing / (k - 1))
    else:
        targets = one_hot * (1 - smoothing) + smoothing / k
    return -(targets * jax.nn.log_softmax(logits)).sum(-1).mean()


def run(case: step_cases.Case, d: Path, x64: bool) -> dict[str, np.ndarray]:
    c = step_cases.config(case)
    flat, _ = models.weights.read(d / f"{case.model}.safetensors")
    dtype = jnp.float64 if x64 else jnp.float32
    model = models.create(
        case.model,
        num_classes=step_cases.NUM_CLASSES,
        weights=flat,
        dtype=dtype,
        **step_cases.model_kwargs(c),
    )
    split = SplitModel(model)
    batch = dict(np.load(d / f"{case.model}.batch.npz"))
    info = models.info(case.model)
    tx = optim.create_optimizer(c, optax.constant_schedule(step_cases.lr(case)))
    if x64:
        params = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), split.initial_params)
        stats = jax.tree.map(lambda a: jnp.asarray(a, jnp.float64), split.initial_stats)
        images = batch["input"].astype(np.float64)  # the float32 input our step computes

        @jax.jit
        def step(params, stats, opt_state):
            def loss_fn(p):
                logits, new_stats = split.apply(p, stats, images, train=True)
                loss = _ce64(
                    logits, batch["label"], c.train.label_smoothing, c.train.label_smoothing_mode
                )
                return loss, new_stats

            (loss, new_stats), grads = jax.value_and_grad(loss_fn, has_aux=True)(params)
            updates, opt_state = tx.update(grads, opt_state, params)
            return loss, optax.apply_updates(params, updates), new_stats, opt_state

        loss, params, stats, opt_state = step(params, stats, tx.init(params))
    else:
        train_step = steps.make_train_step(
            split,
            tx,
            mean=info.mean,
            std=info.std,
            dtype=jnp.float32,
            label_smoothing=c.train.label_smoothing,
            mesh=mesh_lib.make_mesh(),
            label_smoothing_mode=c.train.label_smoothing_mode,
        )
        state = TrainState(
            step=jnp.zeros((), jnp.int32),
            params=split.initial_params,
            batch_stats=split.initial_stats,
            opt_state=tx.init(split.initial_params),
            rng=jax.random.key_data(jax.random.key(0)),
        )
        state, metrics = train_step(state, batch)
        loss = metrics["loss"] / metrics["count"]
        params, stats, opt_state = state.params, state.batch_stats, state.opt_state
    out = {"loss": np.asarray(loss)}
    out.update({f"param:{k}": np.asarray(v) for k, v in params.items()})
    out.update({f"stat:{k}": np.asarray(v) for k, v in stats.items()})
    out.update(opt_leaves(opt_state, c.optim.name))
    return out


def normalized_input(images: np.ndarray, name: str) -> np.ndarray:
    """The float32 NHWC input our train step computes from uint8 images (compiled the same way)."""
    info = models.info(name)
    fn = jax.jit(lambda x: steps.normalize(x, info.mean, info.std, jnp.float32))
    return np.asarray(fn(images))


def main(argv: list[str]) -> None:
    d = Path(argv[0])
    x64 = bool(jax.config.jax_enable_x64)
    for case_id in argv[1:]:
        out = run(step_cases.BY_ID[case_id], d, x64)
        np.savez(d / f"{case_id}.{'jax64' if x64 else 'jax32'}.npz", **out)


if __name__ == "__main__":
    main(sys.argv[1:])

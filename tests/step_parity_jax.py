"""The JAX side of the one-step parity (tests/test_step_parity.py), in float32 or float64.

    JAX_ENABLE_X64=1 python -m tests.step_parity_jax DIR CASE_ID...   # the float64 references

float32 runs our train step (train_lib.steps.make_train_step with train_lib.optim). float64 runs
the same model, loss formula and optax chain with every array in float64 (the train step casts
the input and the logits to float32, which a reference must not do); it says what "equal" can
mean for float32. DIR holds <model>.safetensors (canonical weights) and <model>.batch.npz
(uint8 NHWC images, labels, and `input`: the float32 normalised images exactly as our step makes
them, which every other side takes, so that all start from the same input: a ReLU network's
gradient moves by far more than the input's rounding where a unit sits at its kink). Each case
writes DIR/<case id>.jax32.npz (`run`, in the test's process) or .jax64.npz (`run_x64`, this
module's main).
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


def run(case: step_cases.Case, d: Path) -> dict[str, np.ndarray]:
    """Our float32 train step (the thing under test) on the case's batch."""
    c = step_cases.config(case)
    flat, _ = models.weights.read(d / f"{case.model}.safetensors")
    model = models.create(
        case.model, num_classes=step_cases.NUM_CLASSES, weights=flat, **step_cases.model_kwargs(c)
    )
    split = SplitModel(model)
    batch = dict(np.load(d / f"{case.model}.batch.npz"))
    info = models.info(case.model)
    tx = optim.create_optimizer(c, optax.constant_schedule(step_cases.lr(case)))
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
        opt_state=jax.jit(tx.init)(split.initial_params),  # eager: a program per shape
        rng=jax.random.key_data(jax.random.key(0)),
    )
    state, metrics = train_step(state, batch)
    loss = metrics["loss"] / metrics["count"]
    return _result(loss, state.params, state.batch_stats, state.opt_state, c.optim.name)


def run_x64(cases: list[step_cases.Case], d: Path) -> dict[str, dict[str, np.ndarray]]:
    """The float64 answer for the cases of one model: one compiled forward and backward for
    all of them (vmapped over each case's smoothed targets), then each case's optax chain in
    float64. A case without a PyTorch reference also gets 'grad:<param>' (its float64
    gradients, for the optimizer-only comparison with timm)."""
    (model_name,) = {case.model for case in cases}
    c0 = step_cases.config(cases[0])
    flat, _ = models.weights.read(d / f"{model_name}.safetensors")
    model = models.create(
        model_name,
        num_classes=step_cases.NUM_CLASSES,
        weights=flat,
        dtype=jnp.float64,
        **step_cases.model_kwargs(c0),
    )
    split = SplitModel(model)
    batch = dict(np.load(d / f"{model_name}.batch.npz"))
    # numpy casts: jnp's would compile one program per parameter shape
    params = jax.tree.map(lambda a: np.asarray(a, np.float64), split.initial_params)
    stats = jax.tree.map(lambda a: np.asarray(a, np.float64), split.initial_stats)
    images = batch["input"].astype(np.float64)  # the float32 input our step computes
    targets = np.stack([step_cases.targets(case, batch["label"]) for case in cases])

    def loss_fn(p, stats, images, t):
        logits, new_stats = split.apply(p, stats, images, train=True)
        return -(t * jax.nn.log_softmax(logits.astype(jnp.float64))).sum(-1).mean(), new_stats

    grad_fn = jax.vmap(jax.value_and_grad(loss_fn, has_aux=True), in_axes=(None, None, None, 0))
    (losses, new_stats), grads = jax.jit(grad_fn)(params, stats, images, targets)
    new_stats = jax.tree.map(lambda a: a[0], new_stats)
    out = {}
    for i, case in enumerate(cases):
        c = step_cases.config(case)
        tx = optim.create_optimizer(c, optax.constant_schedule(step_cases.lr(case)))

        @jax.jit
        def update(g, p, tx=tx):
            updates, opt_state = tx.update(g, tx.init(p), p)
            return optax.apply_updates(p, updates), opt_state

        g = jax.tree.map(lambda a, i=i: a[i], grads)
        new_params, opt_state = update(g, params)
        out[case.id] = _result(losses[i], new_params, new_stats, opt_state, c.optim.name)
        if case.reference is None:
            out[case.id].update({f"grad:{k}": np.asarray(v) for k, v in g.items()})
    return out


def _result(loss, params, stats, opt_state, optimizer: str) -> dict[str, np.ndarray]:
    out = {"loss": np.asarray(loss)}
    out.update({f"param:{k}": np.asarray(v) for k, v in params.items()})
    out.update({f"stat:{k}": np.asarray(v) for k, v in stats.items()})
    out.update(opt_leaves(opt_state, optimizer))
    return out


def normalized_input(images: np.ndarray, name: str) -> np.ndarray:
    """The float32 NHWC input our train step computes from uint8 images (compiled the same way)."""
    info = models.info(name)
    fn = jax.jit(lambda x: steps.normalize(x, info.mean, info.std, jnp.float32))
    return np.asarray(fn(images))


def main(argv: list[str]) -> None:
    """Writes DIR/<case id>.jax64.npz for the given cases (grouped by model)."""
    if not jax.config.jax_enable_x64:
        raise SystemExit("run with JAX_ENABLE_X64=1")
    d = Path(argv[0])
    by_model: dict[str, list[step_cases.Case]] = {}
    for case_id in argv[1:]:
        case = step_cases.BY_ID[case_id]
        by_model.setdefault(case.model, []).append(case)
    for cases in by_model.values():
        for case_id, out in run_x64(cases, d).items():
            np.savez(d / f"{case_id}.jax64.npz", **out)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Training recipes: mixup / cutmix (both sides), and the train-step features around them."""

from __future__ import annotations

import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import models
from tests import cli
from tests.test_ascend_port import REPO, ascend_env, ascend_python
from train_lib import mixup as jax_mixup
from train_lib.recipes import mixup as rule

# A batch whose example i is the constant image i + 1 with label i: a pixel's value says which
# example it came from, and a target's column says which label it came from.
B, H, W, C = 8, 12, 10, 3
IMAGES = np.broadcast_to(np.arange(1, B + 1, dtype=np.float32)[:, None, None, None], (B, H, W, C))
LABELS = np.arange(B, dtype=np.int32)
SMOOTHING = 0.1


def _spec(mixup=0.0, cutmix=0.0, prob=1.0, switch_prob=0.5, mode="batch") -> dict:
    return {
        "mixup_alpha": mixup,
        "cutmix_alpha": cutmix,
        "prob": prob,
        "switch_prob": switch_prob,
        "mode": mode,
    }


CASES = {
    "alpha0": {"spec": _spec(), "seed": 1},
    "prob0": {"spec": _spec(mixup=0.8, cutmix=1.0, prob=0.0), "seed": 1},
    "cutmix_elem": {"spec": _spec(cutmix=1.0, mode="elem"), "seed": 2},
    "cutmix_pair": {"spec": _spec(cutmix=1.0, mode="pair"), "seed": 3},
    "cutmix_batch": {"spec": _spec(cutmix=1.0), "seed": 4},
    "mixup_elem": {"spec": _spec(mixup=0.8, mode="elem"), "seed": 5},
    "mixup_batch": {"spec": _spec(mixup=0.8), "seed": 6},
    "both_elem": {"spec": _spec(mixup=0.8, cutmix=1.0, mode="elem"), "seed": 7},
}


def _jax_mix(case: dict, seed: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    spec = rule.MixupSpec(**case["spec"])
    fn = jax.jit(lambda k, x, y: jax_mixup.apply(k, spec, x, y, B, SMOOTHING))
    key = jax.random.key(case["seed"] if seed is None else seed)
    images, targets = fn(key, jnp.asarray(IMAGES), jnp.asarray(LABELS))
    return np.asarray(images), np.asarray(targets)


@pytest.fixture(scope="module")
def mindspore_checks(tmp_path_factory) -> dict:
    """Every MindSpore-side recipe check in one interpreter start: {what: its output}. mixup:
    every case mixed by ascend_port.mixup inside a mindspore.dataset pipeline."""
    mixup_cases = {
        n: {
            **c,
            "images": IMAGES.tolist(),
            "labels": LABELS.tolist(),
            "num_classes": B,
            "smoothing": SMOOTHING,
        }
        for n, c in CASES.items()
    }
    checks = {
        "mixup": (mixup_cases, "mixup.npz"),
        "decay": ({"models": DECAY_MODELS}, "decay.json"),
        "loss_scale": ({}, "loss_scale.json"),
    }
    return _run_checks(tmp_path_factory.mktemp("ms_recipes"), checks)


def _smoothed(weights: np.ndarray) -> np.ndarray:
    return weights * (1 - SMOOTHING) + SMOOTHING / B


def _check_properties(name: str, images: np.ndarray, targets: np.ndarray) -> None:
    """What timm's definition implies for CASES[name] (partner of example i is B-1-i)."""
    spec = CASES[name]["spec"]
    assert images.shape == IMAGES.shape and images.dtype == np.float32
    assert targets.shape == (B, B) and targets.dtype == np.float32
    np.testing.assert_allclose(targets.sum(-1), 1.0, rtol=1e-6)
    own, partner = np.arange(B), np.arange(B)[::-1]
    if name in ("alpha0", "prob0"):  # identity: images untouched, targets the smoothed one-hot
        np.testing.assert_array_equal(images, IMAGES)
        np.testing.assert_allclose(targets, _smoothed(np.eye(B, dtype=np.float32)), atol=1e-7)
        return
    # Every pixel is a blend lam * own + (1 - lam) * partner of the two source values.
    values = images[..., 0]
    pasted = np.isclose(values, (partner + 1)[:, None, None], atol=1e-5).mean(axis=(1, 2))
    lam_target = (targets[own, own] - SMOOTHING / B) / (1 - SMOOTHING)
    if spec["cutmix_alpha"] and not spec["mixup_alpha"]:
        # cutmix: label weight of the own class = 1 - pasted area fraction (area correction).
        np.testing.assert_allclose(lam_target, 1 - pasted, atol=1e-6)
        np.testing.assert_allclose(targets[own, partner], _smoothed(pasted), atol=1e-6)
        assert ((pasted > 0) & (pasted < 1)).any()  # real boxes were pasted
        kept = np.isclose(values, (own + 1)[:, None, None]) | np.isclose(
            values, (partner + 1)[:, None, None]
        )
        assert kept.all()  # cutmix copies pixels, never blends
    if spec["mixup_alpha"] and not spec["cutmix_alpha"]:
        lam_pixels = (values - (partner + 1)[:, None, None]) / ((own - partner)[:, None, None])
        np.testing.assert_allclose(
            lam_pixels, np.broadcast_to(lam_target[:, None, None], lam_pixels.shape), atol=1e-5
        )
    if spec["mode"] == "batch":
        assert np.allclose(lam_target, lam_target[0])
    if spec["mode"] in ("pair", "elem"):
        assert len(np.unique(np.round(lam_target[: B // 2], 6))) > 1  # drawn per pair / example
    if spec["mode"] == "pair":  # i and B-1-i share their draw
        np.testing.assert_allclose(lam_target, lam_target[::-1], atol=1e-6)


@pytest.mark.parametrize("name", sorted(CASES))
def test_jax_mixup_follows_timm_definition(name):
    _check_properties(name, *_jax_mix(CASES[name]))


@pytest.mark.xdist_group("ascend_port")
@pytest.mark.parametrize("name", sorted(CASES))
def test_mindspore_mixup_follows_the_same_definition(name, mindspore_checks):
    mixed = mindspore_checks["mixup"]
    _check_properties(name, mixed[f"{name}/images"], mixed[f"{name}/targets"])


def test_mixup_is_deterministic_per_key():
    case = CASES["both_elem"]
    a, b, c = _jax_mix(case), _jax_mix(case), _jax_mix(case, seed=99)
    np.testing.assert_array_equal(a[0], b[0])
    assert not np.array_equal(a[0], c[0])


# --------------------------------------------------------------------------- resume
RECIPE_OVERRIDES = (
    "data.mixup=0.8",
    "data.cutmix=1.0",
    "data.mixup_mode='elem'",
    "train.ema_decay=0.9",
    "train.ema_warmup=True",
    "train.accum_steps=2",
    "model.dtype='float16'",
)


def _metrics(workdir) -> list[dict]:
    return [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess_training")
def test_resume_is_bit_exact_with_the_recipes_on(tmp_path):
    """Mixup/cutmix draws come from the state's rng and step, the EMA and the loss scale are
    checkpointed, the micro-batches are fixed: a run stopped and resumed ends on the same
    weights, raw and averaged, bit for bit, as an uninterrupted one, with the same train rows.
    In float16: the dynamic loss scale starts at 2^15, which overflows on this model's first
    steps; each skipped step halves it (logged per row) and the later steps move the weights.
    Both eval rows are written. (Export of raw vs averaged weights: test_ema_of_a_constant_...)
    The resume runs in a new process, which then trains the uninterrupted run too (after the
    resumed one: nothing the resumed run left in the process can help it match). On the
    synthetic source (one random batch every step; 40 eval images, not the digits' 359: float16
    runs slowly on CPU): the data pipeline's own resume is test_resumed_run_ends_where_an_...'s."""
    from tests.test_train_lib import _train, _train_runs, _weights
    from tests.train_subprocess import config_from
    from train_lib import export, loss_scale

    steps = (
        "data.source='synthetic'",
        "data.synthetic_num_classes=10",
        "data.synthetic_eval_examples=40",
        "train.steps=6",
        "train.batch_size=16",
        "train.eval_batch_size=40",
        "train.checkpoint_every_steps=3",
        "train.log_every_steps=1",
        "train.tensorboard=False",
        "train.eval_every_epochs=100",
        *RECIPE_OVERRIDES,
    )
    at_3 = _weights(_train(tmp_path / "split", *steps, "train.stop_after_steps=3"))  # raw
    resumed, full = _train_runs(
        [
            (tmp_path / "split", (*steps, "export_ema=True")),
            (tmp_path / "full", (*steps, "export_ema=True")),
        ]
    )
    a, b = _weights(full), _weights(resumed)
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k], err_msg=k)
    assert full["result"] == resumed["result"]
    rows = _metrics(tmp_path / "full")
    assert [(r["step"], r["split"]) for r in rows if "eval" in r["split"]] == [
        (6, "eval"),
        (6, "eval_ema"),
    ]
    train_rows = [r for r in rows if r["split"] == "train"]
    split_rows = [r for r in _metrics(tmp_path / "split") if r["split"] == "train"]
    for r in (*train_rows, *split_rows):
        r.pop("img_per_s")  # timing
    assert train_rows == split_rows
    scale = loss_scale.INITIAL_SCALE
    for r in train_rows:  # halved on each skipped step, kept on an applied one (no growth yet)
        scale = scale / 2 if r["skipped_steps"] else scale
        assert r["loss_scale"] == scale and r["skipped_steps"] in (0, 1), train_rows
    assert sum(r["skipped_steps"] for r in train_rows) < 6, train_rows
    raw = models.weights.read(export.run(config_from(steps), str(tmp_path / "full")))[0]
    assert any(not np.array_equal(raw[k], at_3[k]) for k in raw), "no step moved the weights"
    print([(r["step"], r["skipped_steps"], r["loss_scale"]) for r in train_rows])


# --------------------------------------------------------------------------- weight decay
DECAY_MODELS = ["hlg_mobile_zoo", "hlg_mobile", "hardnet39ds"]


def test_transformer_exclusions_follow_the_family_declaration():
    """decay_norm_and_bias=False: no decay on 1-D params, nor on the zoo HLG's position
    embeddings and cls token (its family's no_weight_decay); conv/linear kernels decayed."""
    from models import registry
    from train_lib import optim
    from train_lib.state import SplitModel

    params = SplitModel(registry.abstract("hlg_mobile_zoo", num_classes=10)).initial_params
    mask = optim.decay_mask(params, family="hlg_zoo")
    undecayed_nd = sorted(k for k, v in params.items() if v.ndim > 1 and not mask[k])
    assert undecayed_nd == ["cls", "pos_embed1", "pos_embed2", "pos_embed3", "pos_embed4"]
    assert not any(mask[k] for k, v in params.items() if v.ndim <= 1)
    assert mask["head.kernel"]


@pytest.mark.xdist_group("ascend_port")
def test_both_sides_decay_the_same_parameters(mindspore_checks):
    from models import registry
    from train_lib import optim
    from train_lib.state import SplitModel

    ms = mindspore_checks["decay"]
    for name in DECAY_MODELS:
        params = SplitModel(registry.abstract(name, num_classes=10)).initial_params
        assert ms[name] == optim.decay_mask(params, family=registry.info(name).family), name


# --------------------------------------------------------------------------- class count
def test_more_logits_than_classes_is_a_note_fewer_an_error():
    from train_lib.recipes import checks

    assert checks.class_count(1000, 1000, "x") == (None, None)
    error, note = checks.class_count(1001, 1000, "imagenet")
    assert error is None and "1000..1000 are never targets" in note
    error, note = checks.class_count(999, 1000, "imagenet")
    assert note is None and "at least" in error


def test_jax_side_accepts_1001_logits_on_1000_classes(caplog):
    from configs import base
    from train_lib import build
    from train_lib.errors import UserError

    c = base.get_config()
    c.data.source, c.data.synthetic_num_classes = "synthetic", 10
    c.model.num_classes = 11
    with caplog.at_level("WARNING"):
        assert build.dataset_info(c).num_classes == 10
    assert sum("never targets" in r.getMessage() for r in caplog.records) == 1
    c.model.num_classes = 9
    with pytest.raises(UserError, match="at least"):
        build.dataset_info(c)


# --------------------------------------------------------------------------- EMA
def test_ema_of_a_constant_gradient_toy_equals_the_closed_form(tmp_path):
    """SGD at constant lr on a constant gradient moves w_t = w0 - t c (c = lr g); the EMA after N
    steps is then w0 - c (1 - d) S with S = sum_t t d^(N - t) in closed form. The average is
    checkpointed with the state and restored bit for bit."""
    import optax

    from train_lib import checkpoint
    from train_lib import ema as ema_lib
    from train_lib.state import TrainState

    d, lr, n = 0.9, 0.1, 25
    w0 = {"w": jnp.array([1.0, -2.0, 3.0])}
    g = {"w": jnp.array([0.5, 1.0, -1.5])}
    tx = optax.sgd(lr)
    stats = {"bn.mean": jnp.zeros(2)}

    @jax.jit
    def step(state):
        updates, opt = tx.update(g, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        stats = {"bn.mean": state.batch_stats["bn.mean"] + 1.0}  # statistics averaged as well
        ema = ema_lib.update(state.ema, params, stats, ema_lib.decay_at(state.step + 1, d, False))
        return state.replace(
            step=state.step + 1, params=params, batch_stats=stats, opt_state=opt, ema=ema
        )

    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=w0,
        batch_stats=stats,
        opt_state=tx.init(w0),
        rng=jax.random.key_data(jax.random.key(0)),
        ema=ema_lib.init(w0, stats),
    )
    for _ in range(n):
        state = step(state)
    s = n * (1 - d**n) / (1 - d) - d * (1 - n * d ** (n - 1) + (n - 1) * d**n) / (1 - d) ** 2
    c = lr * np.asarray(g["w"], np.float64)
    expected = np.asarray(w0["w"], np.float64) - c * (1 - d) * s
    np.testing.assert_allclose(state.ema["params"]["w"], expected, rtol=1e-5)
    # Statistics 0, 1, 2, ...: the same closed form with w0 = 0, c = -1.
    np.testing.assert_allclose(state.ema["batch_stats"]["bn.mean"], (1 - d) * s, rtol=1e-5)
    assert not np.allclose(state.ema["params"]["w"], state.params["w"])  # it lags, as it should

    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=1, model_name="toy", num_classes=1)
    try:
        ckpt.save(n, state.as_dict())
        ckpt.manager.wait_until_finished()
        blank = jax.tree.map(jnp.zeros_like, state.as_dict())
        restored = TrainState.from_dict(ckpt.restore(n, blank))
        only_ema = ckpt.restore_weights(n, {"params": w0, "batch_stats": stats}, ema=True)
    finally:
        ckpt.close()
    for a, b in ((restored.ema, state.ema), (only_ema, state.ema)):
        jax.tree.map(np.testing.assert_array_equal, a, b)


def test_ema_warmup_follows_timm():
    from train_lib import ema as ema_lib

    steps = jnp.array([1, 10, 1000, 10**8])
    got = ema_lib.decay_at(steps, 0.9999, True)
    np.testing.assert_allclose(
        got, np.minimum(0.9999, 1 - (1 + np.asarray(steps, float)) ** (-2 / 3)), rtol=1e-6
    )
    assert float(ema_lib.decay_at(jnp.array(1), 0.99, False)) == pytest.approx(0.99)


# --------------------------------------------------------------------------- accumulation / fp16
class _Toy:
    """A conv + linear classifier (BatchNorm after the conv if asked), computing in `dtype` with
    float32 params."""

    @staticmethod
    def create(dtype=jnp.float32, batch_norm: bool = False):
        from flax import nnx

        class Toy(nnx.Module):
            def __init__(self, rngs):
                self.conv = nnx.Conv(3, 4, (3, 3), dtype=dtype, rngs=rngs)
                self.norm = nnx.BatchNorm(4, dtype=dtype, rngs=rngs) if batch_norm else None
                self.fc = nnx.Linear(4, 5, dtype=dtype, rngs=rngs)
                self.num_classes = 5

            def __call__(self, x):
                x = self.conv(x)
                if self.norm is not None:
                    x = self.norm(x)
                return self.fc(nnx.relu(x).mean((1, 2)))

        return Toy(nnx.Rngs(0))


def _toy_setup(dtype=jnp.float32, batch_norm: bool = False, **step_kwargs):
    import optax

    from train_lib import mesh as mesh_lib
    from train_lib import steps
    from train_lib.state import SplitModel, TrainState

    split = SplitModel(_Toy.create(dtype, batch_norm))
    tx = optax.sgd(0.5, momentum=0.9)
    step = steps.make_train_step(
        split,
        tx,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        dtype=dtype,
        label_smoothing=0.1,
        mesh=mesh_lib.make_mesh(),
        **step_kwargs,
    )

    def state(**extra):
        # A fresh copy every time: the step donates the state it is given.
        return TrainState(
            step=jnp.zeros((), jnp.int32),
            params=jax.tree.map(jnp.array, split.initial_params),
            batch_stats=split.initial_stats,
            opt_state=tx.init(split.initial_params),
            rng=jax.random.key_data(jax.random.key(0)),
            **extra,
        )

    return step, state


def _toy_batch(seed: int, n: int = 16) -> dict:
    rng = np.random.default_rng(seed)
    return {
        "image": jnp.asarray(rng.integers(0, 256, (n, 8, 8, 3), dtype=np.uint8)),
        "label": jnp.asarray(rng.integers(0, 5, n, dtype=np.int32)),
    }


@pytest.mark.parametrize("mode", ["jit", "pmap"])
@pytest.mark.parametrize("mixup", [None, rule.MixupSpec(0.8, 1.0, 1.0, 0.5, "elem")])
def test_accumulating_k_micro_batches_equals_one_batch_of_k_b(mixup, mode):
    """Two optimizer steps (momentum SGD) on batches of 16: one batch vs 4 micro-batches of 4,
    mixup on or off (the batch is mixed before it is split), in either parallel mode (pmap: the
    micro-batches' scan runs inside the per-device program, on gradients typed per device). No
    BatchNorm, so the only difference is the order of float sums."""
    results = {}
    for k in (1, 4):
        step, state = _toy_setup(accum_steps=k, mixup=mixup, mode=mode)
        s = state()
        for seed in (0, 1):
            s, metrics = step(s, _toy_batch(seed))
        results[k] = (jax.device_get(s.params), jax.device_get(metrics))
    for name in results[1][0]:
        np.testing.assert_allclose(
            results[4][0][name], results[1][0][name], atol=1e-6, err_msg=name
        )
    assert results[1][0]["fc.kernel"].shape == (4, 5)
    assert not np.allclose(results[1][0]["fc.kernel"], _toy_setup()[1]().params["fc.kernel"])
    for key in ("loss", "top1", "count"):
        np.testing.assert_allclose(results[4][1][key], results[1][1][key], rtol=1e-6)


def test_pmap_mode_accumulates_with_batch_norm_as_jit_mode_on_one_device():
    """accum_steps=2 with BatchNorm: in pmap mode the micro-batches' scan carries statistics and
    metrics that differ per device (its first step raised a type error before); on one device
    its step equals jit mode's."""
    out = {}
    for mode in ("jit", "pmap"):
        step, state = _toy_setup(batch_norm=True, accum_steps=2, mode=mode)
        s0 = state()
        initial_stats = jax.device_get(s0.batch_stats)
        s, metrics = step(s0, _toy_batch(0))
        out[mode] = jax.device_get((s.params, s.batch_stats, metrics))
    assert out["jit"][1].keys() == initial_stats.keys() and initial_stats
    assert not np.allclose(out["jit"][1]["norm.mean"], initial_stats["norm.mean"])
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-6), out["jit"], out["pmap"])


def test_fp16_overflow_skips_the_update_and_halves_the_scale():
    from train_lib import loss_scale

    step, state = _toy_setup(jnp.float16)
    batch = _toy_batch(0)
    # Injected overflow: a scale of 2^60 turns the float16 backward pass into inf.
    s0 = state(loss_scale=loss_scale.init(2.0**60))
    before = jax.device_get((s0.params, s0.opt_state))
    s1, _ = step(s0, batch)
    assert float(s1.loss_scale["scale"]) == 2.0**59 and int(s1.loss_scale["good_steps"]) == 0
    jax.tree.map(np.testing.assert_array_equal, jax.device_get((s1.params, s1.opt_state)), before)
    assert int(s1.step) == 1
    # A normal scale: the update happens, the scale is kept, params stay float32.
    s2, metrics = step(state(loss_scale=loss_scale.init()), batch)
    assert float(s2.loss_scale["scale"]) == loss_scale.INITIAL_SCALE
    assert int(s2.loss_scale["good_steps"]) == 1 and np.isfinite(float(metrics["loss"]))
    assert not np.array_equal(s2.params["fc.kernel"], before[0]["fc.kernel"])
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves((s2.params, s2.opt_state)))
    # Growth: after GROWTH_INTERVAL finite steps in a row the scale doubles.
    grown = loss_scale.adjust(
        {"scale": jnp.float32(8.0), "good_steps": jnp.int32(loss_scale.GROWTH_INTERVAL - 1)},
        jnp.bool_(True),
    )
    assert float(grown["scale"]) == 16.0 and int(grown["good_steps"]) == 0


# Measured relative loss difference vs float32 on this batch (random init, 10 classes, CPU):
# bfloat16 2.7e-3 (hardnet39ds), 1.5e-4 (hrnet_w18_small), 1.5e-3 (hlg_mobile); float16 8.6e-4,
# 1.3e-4, 4.4e-4. The tolerances leave 3.5x headroom over the worst family.
LOW_PRECISION_TOL = {"bfloat16": 1e-2, "float16": 3e-3}


@pytest.mark.parametrize(
    "name",
    [
        "hardnet39ds",
        pytest.param("hrnet_w18_small", marks=pytest.mark.slow),  # three big compiles
        pytest.param("hlg_mobile", marks=pytest.mark.slow),  # 224 px
    ],
)
def test_low_precision_losses_agree_with_float32(name):
    """Same weights (params stay float32), same batch, train-mode loss (BatchNorm on batch
    statistics; dropout / drop-path masks from one key) in float32, bfloat16 and float16."""
    from flax import nnx

    import models
    from train_lib import steps
    from train_lib.state import SplitModel

    size = models.info(name).test_input_size
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (4, size, size, 3), dtype=np.uint8)
    labels = jnp.asarray(rng.integers(0, 10, 4, dtype=np.int32))
    losses = {}
    for dtype in ("float32", "bfloat16", "float16"):
        split = SplitModel(
            models.create(name, num_classes=10, dtype=getattr(jnp, dtype), rngs=nnx.Rngs(0))
        )
        x = steps.normalize(jnp.asarray(images), (0.5,) * 3, (0.25,) * 3, getattr(jnp, dtype))

        def loss(params, split=split, x=x):
            logits, _ = split.apply(
                params, split.initial_stats, x, train=True, rng=jax.random.key(0)
            )
            return steps.cross_entropy(logits, labels, 0.0).mean()

        value = jax.jit(loss)(split.initial_params)
        losses[dtype] = float(value)
    print(name, losses)
    for dtype, tol in LOW_PRECISION_TOL.items():
        assert abs(losses[dtype] - losses["float32"]) <= tol * losses["float32"], (dtype, losses)


# --------------------------------------------------------------------------- MindSpore side
def _run_checks(tmp_path, checks: dict[str, tuple[dict, str]]) -> dict:
    """Runs tests/ascend_side/check_recipes.py on {what: (cases, output file name)} in one
    MindSpore interpreter; returns {what: its output} (.json, or .npz as a dict of arrays)."""
    args = []
    for what, (cases, out) in checks.items():
        (tmp_path / f"{what}.cases.json").write_text(json.dumps(cases))
        args += [what, str(tmp_path / f"{what}.cases.json"), str(tmp_path / out)]
    proc = subprocess.run(
        [ascend_python(), os.path.join(REPO, "tests", "ascend_side", "check_recipes.py"), *args],
        cwd=REPO,
        env=ascend_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return {
        what: dict(np.load(tmp_path / out))
        if out.endswith(".npz")
        else json.loads((tmp_path / out).read_text())
        for what, (_, out) in checks.items()
    }


def _run_check(tmp_path, what: str, cases: dict, out: str = "out.json") -> dict:
    """One check of tests/ascend_side/check_recipes.py in its own interpreter start."""
    return _run_checks(tmp_path, {what: (cases, out)})[what]


@pytest.mark.xdist_group("ascend_port")
def test_mindspore_loss_scale_is_dynamic_unless_the_seeds_fixed_one_is_asked(mindspore_checks):
    got = mindspore_checks["loss_scale"]
    assert got["dynamic"] == {
        "type": "DynamicLossScaleManager",
        "before": 1024.0,
        "after": 512.0,
        "drops_update": True,
    }
    assert got["fixed"] == {
        "type": "FixedLossScaleManager",
        "before": 1024.0,
        "after": 1024.0,
        "drops_update": False,
    }


@pytest.mark.slow  # a MindSpore training in a subprocess
@pytest.mark.xdist_group("ascend_train")
def test_mindspore_trains_with_mixup_cutmix_and_extra_logits(tmp_path):
    """4 steps of ascend_port.train with mixup + cutmix (pair mode) and 4 logits on a 3-class
    folder (the zoo's 1001-on-1000 case): finite losses and a log line about the extra logit;
    2 logits are refused."""
    from tests.test_ascend_port import _image_folder, run_ascend

    _image_folder(tmp_path / "data")
    args = [
        "-m",
        "ascend_port",
        "--config",
        "configs/base.py",
        "--config.model.name=hardnet39ds",
        "--config.data.image_size=32",
        f"--config.data.source=folder:{tmp_path / 'data'}",
        "--config.ascend.device_target=CPU",
        "--config.ascend.mode=pynative",
        "--config.train.batch_size=8",
        "--config.train.steps=4",
        "--config.train.log_every_steps=1",
        "--config.train.eval_every_epochs=100",
        "--config.data.mixup=0.8",
        "--config.data.cutmix=1.0",
        "--config.data.mixup_mode=pair",
        "--config.train.label_smoothing=0.1",
    ]
    proc = run_ascend([*args, "--config.model.num_classes=4", "--workdir", str(tmp_path / "r")])
    losses = [r["loss"] for r in _metrics(tmp_path / "r") if r["split"] == "train"]
    assert len(losses) == 4 and np.isfinite(losses).all()
    assert proc.stderr.count("are never targets") >= 1
    refused = subprocess.run(
        [ascend_python(), *args, "--config.model.num_classes=2", "--workdir", str(tmp_path / "r2")],
        cwd=REPO,
        env=ascend_env(),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 2 and "must be at least" in refused.stderr, refused.stderr[-2000:]


def _jax_toy_run(tx, accum_steps: int, batches: list[dict]) -> tuple[dict, list[float]]:
    """The toy after one make_train_step per batch (optax `tx`, label smoothing 0.1)."""
    from train_lib import mesh as mesh_lib
    from train_lib import steps
    from train_lib.state import SplitModel, TrainState

    split = SplitModel(_Toy.create())
    step = steps.make_train_step(
        split,
        tx,
        mean=(0.5,) * 3,
        std=(0.25,) * 3,
        dtype=jnp.float32,
        label_smoothing=0.1,
        mesh=mesh_lib.make_mesh(),
        accum_steps=accum_steps,
    )
    state = TrainState(
        step=jnp.zeros((), jnp.int32),
        params=jax.tree.map(jnp.array, split.initial_params),
        batch_stats=split.initial_stats,
        opt_state=tx.init(split.initial_params),
        rng=jax.random.key_data(jax.random.key(0)),
    )
    losses = []
    for batch in batches:
        state, metrics = step(state, batch)
        losses.append(float(metrics["loss"] / metrics["count"]))
    return jax.device_get(state.params), losses


def _flax_layout(ms_result: dict) -> dict[str, np.ndarray]:
    """The MindSpore toy's weights in the Flax toy's names and layouts."""
    return {
        "conv.kernel": np.asarray(ms_result["conv.weight"]).transpose(2, 3, 1, 0),
        "conv.bias": np.asarray(ms_result["conv.bias"]),
        "fc.kernel": np.asarray(ms_result["fc.weight"]).T,
        "fc.bias": np.asarray(ms_result["fc.bias"]),
    }


def test_clipping_scales_as_pytorch_and_optax_and_leaves_small_gradients_alone():
    """train.grad_clip_norm on the JAX side: a gradient tree over max_norm comes out as
    torch.nn.utils.clip_grad_norm_ and optax.clip_by_global_norm leave it (float32 rounding,
    PyTorch's 1e-6 on the norm included), with global norm max_norm; one within max_norm comes
    out unchanged, bit for bit."""
    import optax
    import torch

    from train_lib import optim

    rng = np.random.default_rng(0)
    grads = {
        "a": rng.normal(size=(3, 5)).astype(np.float32),
        "b": rng.normal(size=(7,)).astype(np.float32),
    }
    norm = float(np.sqrt(sum((g.astype(np.float64) ** 2).sum() for g in grads.values())))
    for max_norm in (norm / 3, norm * 2):
        ours = jax.jit(optim.clip_by_global_norm(max_norm).update)(grads, None)[0]
        theirs = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())[0]
        tensors = [torch.tensor(grads[k]) for k in sorted(grads)]
        for t in tensors:
            t.grad = t.clone()
        torch.nn.utils.clip_grad_norm_(tensors, max_norm)
        for t, k in zip(tensors, sorted(grads), strict=True):
            np.testing.assert_allclose(ours[k], theirs[k], rtol=1e-6, atol=0)
            np.testing.assert_allclose(ours[k], t.grad.numpy(), rtol=1e-6, atol=0)
            if max_norm > norm:
                np.testing.assert_array_equal(ours[k], grads[k])
        clipped = np.sqrt(sum((np.asarray(v, np.float64) ** 2).sum() for v in ours.values()))
        np.testing.assert_allclose(clipped, min(norm, max_norm), rtol=1e-6)


@pytest.mark.xdist_group("ascend_port")
def test_mindspore_clipping_and_accumulation_match_the_jax_side(tmp_path):
    """Two momentum-SGD steps of the BatchNorm-free toy on batches of 16 through
    ascend_port.train_step: 4 micro-batches of 4 equal one batch of 16 (1e-6) and the JAX side's
    accumulated step; clipping by global norm equals the JAX side's clip in front of the same
    SGD (its chain), with and without accumulation; a huge max_norm changes nothing, bit for
    bit."""
    import optax

    from train_lib import optim

    batches = [_toy_batch(0), _toy_batch(1)]
    sgd = optax.sgd(0.5, momentum=0.9)
    clip = 0.05
    runs = {
        "k1": {"accum_steps": 1, "clip_norm": None},
        "k4": {"accum_steps": 4, "clip_norm": None},
        "clip": {"accum_steps": 1, "clip_norm": clip},
        "clip_k4": {"accum_steps": 4, "clip_norm": clip},
        "clip_huge": {"accum_steps": 1, "clip_norm": 1e9},
    }
    cases = {
        "batches": [{k: np.asarray(v).tolist() for k, v in b.items()} for b in batches],
        "runs": runs,
    }
    from train_lib.state import SplitModel

    initial = SplitModel(_Toy.create()).initial_params
    cases["weights"] = {k: np.asarray(v).tolist() for k, v in initial.items()}
    got = {k: _flax_layout(v) for k, v in _run_check(tmp_path, "train_steps", cases).items()}
    for name in got["k1"]:
        np.testing.assert_allclose(got["k4"][name], got["k1"][name], atol=1e-6, err_msg=name)
        np.testing.assert_array_equal(got["clip_huge"][name], got["k1"][name], err_msg=name)
    clipped = optax.chain(optim.clip_by_global_norm(clip), sgd)
    references = {
        "k1": _jax_toy_run(sgd, 1, batches)[0],
        "k4": _jax_toy_run(sgd, 4, batches)[0],
        "clip": _jax_toy_run(clipped, 1, batches)[0],
        "clip_k4": _jax_toy_run(clipped, 4, batches)[0],
    }
    for run, reference in references.items():
        for name, value in reference.items():
            np.testing.assert_allclose(got[run][name], value, atol=2e-6, err_msg=f"{run} {name}")
    # The clip was active: the clipped update is far from the plain one.
    moved = np.abs(references["clip"]["fc.kernel"] - references["k1"]["fc.kernel"]).max()
    assert moved > 1e-2, moved


@pytest.mark.xdist_group("ascend_port")
def test_mindspore_ema_equals_the_closed_form_and_is_restored(tmp_path):
    """ascend_port.train_step with train.ema_decay on a constant-gradient toy: the average of
    the weight after N steps is the closed form of the JAX side's test; the BatchNorm
    statistics are averaged with the same recurrence (with and without timm's warmup, the
    decays coming from train_lib.recipes.ema); a saved step cell restores the average bit for
    bit and continues identically; a checkpoint without an average is refused by name."""
    from train_lib import ema as ema_lib

    d, lr, n = 0.9, 0.1, 25
    w0, g = np.array([1.0, -2.0, 3.0]), np.array([0.5, 1.0, -1.5])
    got = _run_check(
        tmp_path, "ema", {"w0": w0.tolist(), "g": g.tolist(), "lr": lr, "decay": d, "n": n}
    )
    s = n * (1 - d**n) / (1 - d) - d * (1 - n * d ** (n - 1) + (n - 1) * d**n) / (1 - d) ** 2
    expected = w0 - lr * g * (1 - d) * s
    constant = got["constant"]
    np.testing.assert_allclose(constant["ema_w"], expected, rtol=1e-5)
    np.testing.assert_allclose(constant["w"], w0 - n * lr * g, rtol=1e-5)
    assert constant["ema_names"] == [
        "bn.beta",
        "bn.gamma",
        "bn.moving_mean",
        "bn.moving_variance",
        "w",
    ]
    for run in ("constant", "warmup"):
        r = got[run]
        decays = np.asarray(r["decays"], np.float64)
        np.testing.assert_allclose(
            decays,
            np.asarray(ema_lib.decay_at(jnp.arange(1, n + 2), d, run == "warmup")),
            rtol=1e-6,
        )
        average = np.zeros(2)  # the statistics start at 0 (BatchNorm's moving mean)
        for t, value in enumerate(r["stats"]):
            average = average + (1 - decays[t]) * (np.asarray(value) - average)
        np.testing.assert_allclose(r["ema_mean"], average, rtol=1e-5, atol=1e-7)
        assert np.abs(r["ema_mean"]).max() > 1e-3  # the statistics did move
    assert not np.allclose(got["warmup"]["ema_w"], constant["ema_w"])
    assert got["restore"] == {
        "not_loaded": [],
        "equal": True,
        "from_file_equal": True,
        "continues_equal": True,
    }
    assert "no EMA weights" in got["no_ema_error"] and "UserError" in got["no_ema_error"]


@pytest.mark.xdist_group("ascend_port")
def test_mindspore_dynamic_loss_scale_step_skips_overflow_with_accumulation_clip_and_ema(tmp_path):
    """The loss-scaled step cell (Ascend/GPU fp16): an overflowing step moves neither weights
    nor average and halves the scale; a finite one updates both (EMA 0.5: the midpoint)."""
    got = _run_check(tmp_path, "loss_scale_step", {})
    overflow, finite = got["overflow"], got["finite"]
    assert overflow["overflow"] and overflow["scale_after"] == pytest.approx(1.5e38)
    assert overflow["weights_moved"] == 0.0 and overflow["ema_is_before"]
    assert not finite["overflow"] and finite["scale_after"] == 1024.0
    assert finite["weights_moved"] > 1e-3 and finite["ema_is_midpoint"]


_COMPARE_EXPORTS = """
import json, sys
import numpy as np
from safetensors.numpy import load_file
from ascend_port import bridge
from ascend_port import weights as msw
arrays, _ = msw.read_ckpt(sys.argv[1])
average = bridge.ms_to_canonical(msw.ema_entries(arrays))
raw = bridge.ms_to_canonical(bridge.drop_optimizer_state(arrays)[0])
out = {}
for name, expected in (("ema", average), ("raw", raw)):
    got = load_file(sys.argv[2] if name == "ema" else sys.argv[3])
    out[name] = sorted(got) == sorted(expected) and all(
        np.array_equal(got[k], expected[k]) for k in got
    )
out["differ"] = any(not np.array_equal(average[k], raw[k]) for k in average)
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.xdist_group("ascend_train")
def test_mindspore_trains_with_ema_clip_accumulation_and_exports_either_weights(tmp_path):
    """python -m ascend_port with train.ema_decay, grad_clip_norm and accum_steps: an 'eval' and
    an 'eval_ema' row with the JAX side's keys; --mode=export writes the checkpoint's average
    with --config.export_ema and its raw weights without."""
    import shutil

    from tests.test_ascend_port import _image_folder, run_ascend

    _image_folder(tmp_path / "data")
    workdir = tmp_path / "r"
    args = ["-m", "ascend_port", *cli.ascend_run_args(workdir, tmp_path / "data")]
    run_ascend(
        [
            *args,
            "--config.train.batch_size=8",
            "--config.train.steps=2",
            "--config.train.accum_steps=2",
            "--config.train.grad_clip_norm=1.0",
            "--config.train.ema_decay=0.5",
        ]
    )
    rows = _metrics(workdir)
    evals = {r["split"]: r for r in rows if r["split"].startswith("eval")}
    assert set(evals) == {"eval", "eval_ema"} and evals["eval_ema"]["step"] == 2
    assert set(evals["eval_ema"]) == set(evals["eval"]) == {
        "step", "split", "loss", "top1", "top5", "examples"
    }  # fmt: skip
    exported = workdir / "export" / "hardnet39ds.safetensors"
    run_ascend([*args, "--mode=export", "--config.export_ema=True"])
    shutil.copy(exported, tmp_path / "ema.safetensors")
    run_ascend([*args, "--mode=export"])
    (ckpt,) = (workdir / "checkpoints").glob("*.ckpt")
    proc = run_ascend(
        ["-c", _COMPARE_EXPORTS, str(ckpt), str(tmp_path / "ema.safetensors"), str(exported)]
    )
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {
        "ema": True,
        "raw": True,
        "differ": True,
    }

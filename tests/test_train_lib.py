"""The training spine: schedules, optimizers, multi-device equivalence, resume, and CLI errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import models
from configs import base
from tests import cli
from train_lib import optim

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


# --------------------------------------------------------------------------- schedules / optim
def _config(**schedule):
    c = base.get_config()
    c.train.batch_size = 512
    c.schedule.reference_batch_size = 256
    c.schedule.update(schedule)
    return c


def test_cosine_with_warmup_scales_lr_linearly_with_batch():
    c = _config(name="cosine", lr_init=0.01, lr_max=0.1, lr_end=0.001, warmup_epochs=2)
    s = optim.create_schedule(c, steps_per_epoch=10, total_steps=100)
    np.testing.assert_allclose([s(0), s(20), s(100)], [0.02, 0.2, 0.002], rtol=1e-5)
    assert float(s(10)) == pytest.approx(0.11, rel=1e-5)  # halfway through warmup


def test_linear_schedule_matches_the_hrnet_zoo_recipe():
    c = _config(name="linear", lr_init=1e-4, lr_max=0.01, lr_end=1e-5, warmup_epochs=2)
    c.train.batch_size = 128
    c.schedule.reference_batch_size = 128
    s = optim.create_schedule(c, steps_per_epoch=10, total_steps=120)
    np.testing.assert_allclose(
        [s(0), s(20), s(70), s(120)], [1e-4, 0.01, 0.005005, 1e-5], rtol=1e-4
    )


def test_step_schedule_decays_at_epoch_boundaries():
    c = _config(name="step", lr_max=0.05, boundaries_epochs=(3, 6), decay_factor=0.1)
    c.train.batch_size = 256
    s = optim.create_schedule(c, steps_per_epoch=10, total_steps=100)
    np.testing.assert_allclose(
        [s(29), s(30), s(59), s(60)], [0.05, 0.005, 0.005, 0.0005], rtol=1e-5
    )


def test_weight_decay_mask_skips_norms_and_biases():
    params = {
        "conv.kernel": jnp.ones((3, 3, 4, 4)),
        "norm.scale": jnp.ones(4),
        "fc.bias": jnp.ones(4),
    }
    assert optim.decay_mask(params) == {"conv.kernel": True, "norm.scale": False, "fc.bias": False}


def test_rmsprop_uses_the_tf_mindspore_epsilon_placement():
    """ms starts at 1 and eps sits inside the sqrt: update = lr * g / sqrt(ms + eps)."""
    c = base.get_config()
    c.optim.update(name="rmsprop", weight_decay=0.0, momentum=0.0, eps=1e-3, rmsprop_decay=0.9)
    tx = optim.create_optimizer(c, optax.constant_schedule(0.1))
    params, grads = {"w": jnp.array([1.0])}, {"w": jnp.array([2.0])}
    updates, _ = tx.update(grads, tx.init(params), params)
    ms = 0.9 * 1.0 + 0.1 * 4.0
    np.testing.assert_allclose(updates["w"], [-0.1 * 2.0 / np.sqrt(ms + 1e-3)], rtol=1e-6)


# --------------------------------------------------------------------------- subprocess training
def _train(workdir, *overrides, devices: int = 1, timeout: int = 600) -> dict:
    """One tests/train_subprocess.py training in a fresh process: its JSON line."""
    return _train_runs([(workdir, overrides)], devices=devices, timeout=timeout)[0]


def _train_runs(runs, devices: int = 1, timeout: int = 600) -> list[dict]:
    """[(workdir, overrides)] trained one after the other in one fresh process (one interpreter
    start and one set of imports and compiles for all): their JSON lines."""
    argv = []
    for workdir, overrides in runs:
        argv += ["--"] if argv else []
        argv += [str(workdir), *overrides]
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": str(devices), "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, os.path.join(ROOT, "tests", "train_subprocess.py"), *argv],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    outs = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(outs) == len(runs), proc.stdout[-3000:]
    assert all(out["devices"] == devices for out in outs)
    return outs


# Random images (the synthetic source), one SGD step at a small lr. What 1 and 8 devices must
# share, and how closely:
# - Step 1's forward pass (its loss and the BatchNorm statistics it writes) is a smooth function
#   of the inputs: the devices' other reduction order moves it by float noise only (measured: loss
#   identical, running statistics 2e-6). A BatchNorm not synced over the devices moves it by
#   orders of magnitude (pmap mode's per-device statistics: loss 0.13, statistics 0.6 apart).
# - The gradient is not smooth: ReLU6 switches a unit's gradient on or off where its input
#   crosses 0 or 6, and a unit within float noise of a kink lands on either side depending on the
#   summation order alone. Measured on ONE device, the same batch in another order: in 16 of 32
#   orders (XLA's YNNPACK and its Eigen convolutions alike) one unit flipped and step 1's params
#   moved 1.2e-5 (gradients 0.012 of max 3); trained on, the flips compound (3 steps: params
#   1.7e-4, statistics 7.9e-3). So the params are compared after one step, at 1e-4; a wrong
#   BatchNorm sync moves them by 500.
SHORT = (
    "data.source='synthetic'",
    "data.synthetic_num_classes=10",
    "data.synthetic_eval_examples=359",
    "train.steps=1",
    "train.batch_size=16",
    "train.eval_batch_size=40",
    "train.checkpoint_every_steps=100",
    "train.tensorboard=False",
    "model.drop_rate=0.0",
    "optim.name='sgd'",
    "schedule.lr_max=0.001",
    "schedule.warmup_epochs=0.0",
)


def _weights(out) -> dict[str, np.ndarray]:
    return models.weights.read(out["export"])[0]


def _max_abs_diff(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.max(np.abs(a[k] - b[k]))) for k in a)


def _assert_close(a: dict, b: dict, atol: float) -> None:
    worst = _max_abs_diff(a, b)
    assert worst <= atol, worst


def _split_weights(out) -> tuple[dict, dict]:
    """(params, BatchNorm running statistics) of the exported weights."""
    weights = _weights(out)
    is_stat = {k: k.endswith((".mean", ".var")) for k in weights}
    return (
        {k: v for k, v in weights.items() if not is_stat[k]},
        {k: v for k, v in weights.items() if is_stat[k]},
    )


def _train_losses(workdir) -> list[float]:
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    return [row["loss"] for row in rows if row["split"] == "train"]


# The demo on digits, 6 steps, a checkpoint every 3: the resume test stops it after step 3,
# resumes it, and compares with an uninterrupted run.
RESUME = (
    "train.steps=6",
    "train.batch_size=16",
    "train.eval_batch_size=40",
    "train.checkpoint_every_steps=3",
    "train.tensorboard=False",
)


@pytest.fixture(scope="module")
def one_device(tmp_path_factory) -> dict:
    """{name: (workdir, result)} of the 1-device runs, trained in one process: the SHORT run in
    jit ("jit") and pmap ("pmap") mode, and RESUME stopped after its step-3 checkpoint ("split",
    which test_resumed_run_ends_where_an_uninterrupted_run_ends resumes). Several tests compare
    with them (the "subprocess_training" group keeps them on one xdist worker)."""
    runs = {
        "jit": SHORT,
        "pmap": (*SHORT, "parallel.mode=pmap"),
        "split": (*RESUME, "train.stop_after_steps=3"),
    }
    return _train_named(tmp_path_factory.mktemp("one_device"), runs, devices=1)


@pytest.fixture(scope="module")
def eight_devices(tmp_path_factory) -> dict:
    """{name: (workdir, result)} of the SHORT run on 8 devices in jit ("jit") and pmap ("pmap")
    mode, trained in one process."""
    runs = {"jit": SHORT, "pmap": (*SHORT, "parallel.mode=pmap")}
    return _train_named(tmp_path_factory.mktemp("eight_devices"), runs, devices=8)


def _train_named(root, runs: dict, devices: int) -> dict:
    """{name: overrides} trained in one process (workdirs root/<name>): {name: (workdir, result)}."""
    outs = _train_runs([(root / name, overrides) for name, overrides in runs.items()], devices)
    return {name: (root / name, out) for name, out in zip(runs, outs, strict=True)}


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess_training")
def test_eight_devices_match_one_device(one_device, eight_devices):
    """Same global batch, synced BatchNorm: 8 fake CPU devices give 1 device's step-1 loss and
    BatchNorm statistics within 1e-5 and its params within 1e-4 (see SHORT for why these);
    eval over 359 examples (not a multiple of 40 x 8 devices) counts each one once."""
    one_dir, one = one_device["jit"]
    eight_dir, eight = eight_devices["jit"]
    assert eight["result"]["examples"] == one["result"]["examples"] == 359
    losses = _train_losses(one_dir), _train_losses(eight_dir)
    assert len(losses[0]) == len(losses[1]) == 1, losses
    assert abs(losses[0][0] - losses[1][0]) <= 1e-5, losses
    one_params, one_stats = _split_weights(one)
    eight_params, eight_stats = _split_weights(eight)
    _assert_close(one_stats, eight_stats, atol=1e-5)
    _assert_close(one_params, eight_params, atol=1e-4)
    assert abs(one["result"]["loss"] - eight["result"]["loss"]) <= 1e-5
    # The confusion matrix is summed over the sharded batch like the scalar sums.
    report = json.loads((eight_dir / "eval_result.json").read_text())
    confusion = np.asarray(report["confusion"])
    assert confusion.shape == (10, 10) and confusion.sum() == 359
    assert np.trace(confusion) == round(eight["result"]["top1"] * 359)


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess_training")
def test_pmap_mode_equals_jit_on_one_device_and_runs_on_eight(one_device, eight_devices):
    jit, pmap = one_device["jit"][1], one_device["pmap"][1]
    _assert_close(_weights(jit), _weights(pmap), atol=1e-6)
    pmap8 = eight_devices["pmap"][1]
    assert pmap8["result"]["examples"] == 359 and np.isfinite(pmap8["result"]["loss"])
    assert all(np.isfinite(v).all() for v in _weights(pmap8).values())
    # Per-device BatchNorm over 2 examples is another objective than the synced one: far from
    # the 1-device run (measured after one step: params 500 apart, the gradients of 2-example
    # statistics of 1x1 maps blow up). An unsynced jit mode would fail the checks above.
    # (This also tells the two modes' runs apart where they shared a process.)
    assert _max_abs_diff(_weights(jit), _weights(pmap8)) > 1e-3


# One SGD step on 8 devices, each holding the same 2 images, in jit mode (synced BatchNorm over
# the 16) and pmap mode (per-device BatchNorm over its 2): the same statistics and the same mean
# gradient, so the same update. Prints |update_pmap| / |update_jit| and |difference| / |update_jit|.
_SAME_BATCH_ON_EVERY_DEVICE = """
import json
import jax, numpy as np, optax
import models
from configs import demo
from train_lib import build, mesh as mesh_lib
from train_lib.state import SplitModel
split = SplitModel(models.create("hardnet39ds", num_classes=10, drop_rate=0.0))
tx, mesh, config = optax.sgd(0.01), mesh_lib.make_mesh(), demo.get_config()
rng = np.random.default_rng(0)
two = {"image": rng.integers(0, 256, (2, 64, 64, 3), np.uint8), "label": np.array([1, 7], np.int32)}
batch = jax.device_put({k: np.concatenate([v] * 8) for k, v in two.items()}, mesh_lib.data_sharding(mesh))
start = build.initial_state(config, tx, split.initial_params, split.initial_stats)
before = {k: np.asarray(v) for k, v in start.params.items()}  # the steps donate their state
updates = []
for mode in ("jit", "pmap"):
    config.parallel.mode = mode
    state = jax.device_put(jax.tree.map(np.asarray, start), mesh_lib.replicated(mesh))
    new, _ = build.train_step(config, split, tx, mesh)(state, batch)
    updates.append(np.concatenate([np.ravel(new.params[k] - before[k]) for k in sorted(before)]))
jit, pmap = updates
print(json.dumps([float(np.linalg.norm(pmap) / np.linalg.norm(jit)), float(np.linalg.norm(pmap - jit) / np.linalg.norm(jit))]))
"""


@pytest.mark.slow
def test_pmap_mode_averages_the_devices_gradients():
    """Measured: ratio 1.0000, difference 2e-5 of the update; pmap mode used to apply the sum of
    the 8 devices' gradients (ratio 8.0, difference 7.0): inside shard_map jax's autodiff already
    sums a replicated parameter's gradient over the devices, and the step then took their mean."""
    env = {**os.environ, "JAX_NUM_CPU_DEVICES": "8", "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(
        [sys.executable, "-c", _SAME_BATCH_ON_EVERY_DEVICE],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=ROOT,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ratio, difference = json.loads(proc.stdout.strip().splitlines()[-1])
    assert abs(ratio - 1) < 0.05 and difference < 0.05, (ratio, difference)


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess_training")
def test_resumed_run_ends_where_an_uninterrupted_run_ends(tmp_path, one_device):
    """The run one_device stopped after step 3 resumes in a new process, which then trains the
    uninterrupted run too (after the resumed one: nothing the resumed run left in the process
    can help it match)."""
    split, _ = one_device["split"]
    resumed, full = _train_runs([(split, RESUME), (tmp_path / "full", RESUME)])
    assert sorted(n for n in os.listdir(split / "checkpoints") if n.isdigit()) == ["3", "6"]
    _assert_close(_weights(full), _weights(resumed), atol=0.0)
    assert full["result"] == resumed["result"]


# --------------------------------------------------------------------------- CLI errors
_main = cli.run_main_forked  # a process of its own, forked after the imports (see tests/cli.py)


def _assert_one_line_error(proc, *needles):
    cli.assert_one_line_error(proc, *needles)


@pytest.mark.parametrize(
    "args, needles",
    [
        (("--config.train.batch_sise=8",), ("batch_sise",)),
        (("--config.train.batch_size=eight",), ("batch_size",)),
        (("--config.optim.name=lamb",), ("optim.name", "sgd")),
        (("--config.data.source=folder:/nonexistent/imagenet",), ("/nonexistent/imagenet",)),
    ],
)
def test_bad_input_is_one_clear_line(tmp_path, args, needles):
    proc = _main("--config", "configs/demo.py", "--workdir", str(tmp_path / "w"), *args)
    _assert_one_line_error(proc, *needles)


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess_training")
def test_workdir_of_another_model_is_refused(one_device):
    workdir, _ = one_device["jit"]
    before = sorted(p.relative_to(workdir) for p in workdir.rglob("*"))
    proc = _main(
        "--config", "configs/demo.py", "--workdir", str(workdir), "--config.model.name=hardnet68ds"
    )
    _assert_one_line_error(proc, "hardnet39ds", "another --workdir")
    assert sorted(p.relative_to(workdir) for p in workdir.rglob("*")) == before  # nothing touched


@pytest.mark.slow
@pytest.mark.xdist_group("subprocess_training")
def test_two_processes_train_and_evaluate_together(tmp_path):
    """Multi-host through jax.distributed on localhost (gloo CPU collectives): 2 processes x 2
    devices each feed their own slice; both finish and agree; eval counts every image once."""
    port = 20000 + os.getpid() % 20000
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "2",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
    }
    args = [
        "--config",
        "configs/demo.py",
        "--workdir",
        str(tmp_path / "w"),
        "--distributed",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        "--config.train.steps=2",
        "--config.train.batch_size=16",
        "--config.train.eval_batch_size=40",
        "--config.train.tensorboard=False",
    ]
    procs = [
        subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "main.py"), *args, f"--process_id={i}"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=ROOT,
        )
        for i in range(2)
    ]
    outs = []
    try:
        for p in procs:
            out, err = p.communicate(timeout=600)
            assert p.returncode == 0, err[-3000:]
            outs.append(out)
    finally:
        for p in procs:
            p.kill()
    assert "examples=359" in outs[0]  # process 0 prints the result
    assert [n for n in os.listdir(tmp_path / "w" / "checkpoints") if n.isdigit()] == ["2"]

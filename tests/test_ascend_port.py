"""The MindSpore port against the Flax models: bridge, parity, round trip, zoo import, ONNX, CLIs.

Runs in .venv (jax, no mindspore). The MindSpore half runs as subprocesses of the interpreter in
$HHL_ASCEND_PYTHON (set by the Makefile; default .venv-ascend/bin/python); if it is missing the
tests fail, they never skip. Every per-model test is parametrized over the names the port
reports as supported (ascend_port.registry, importable without mindspore), so a new family with
cells is covered by adding it there.
"""

from __future__ import annotations

import json
import os
import subprocess

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import models
from ascend_port import bridge, canonical, schedule, zoo
from ascend_port import registry as port_registry
from configs import base as base_config
from models import layout, registry, weights

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = port_registry.names()  # what the MindSpore side supports
NUM_CLASSES = 10
SIZES = (64, 67)  # even and odd: checks padding/pooling semantics on both
TOL = 1e-4
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

pytestmark = pytest.mark.xdist_group("ascend_port")


# --------------------------------------------------------------------------- interpreter
def ascend_python(env: dict | None = None) -> str:
    """The MindSpore interpreter; fails (never skips) with how to make it."""
    env = os.environ if env is None else env
    path = env.get("HHL_ASCEND_PYTHON") or os.path.join(REPO, ".venv-ascend", "bin", "python")
    if not (os.path.isfile(path) and os.access(path, os.X_OK)):
        pytest.fail(
            f"MindSpore interpreter {path!r} (HHL_ASCEND_PYTHON) not found: run `make venv-ascend` "
            "(the Makefile exports HHL_ASCEND_PYTHON for the tests)",
            pytrace=False,
        )
    return path


def run_ascend(args: list[str], timeout: float = 400) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=REPO, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="upb")
    proc = subprocess.run(
        [ascend_python(), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        pytest.fail(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def test_missing_interpreter_fails_with_instructions():
    with pytest.raises(pytest.fail.Exception, match="run `make venv-ascend`"):
        ascend_python({"HHL_ASCEND_PYTHON": "/nonexistent/python"})


# --------------------------------------------------------------------------- JAX side
def _optim_case() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    case = {"lrs": np.asarray([0.1, 0.05, 0.02], np.float32), "weight_decay": np.float32(0.1)}
    shapes = {"fc.weight": (2, 3), "norm.gamma": (3,)}
    for n, s in shapes.items():
        case[f"w0/{n}"] = rng.standard_normal(s).astype(np.float32)
        for step in range(3):
            case[f"g{step}/{n}"] = rng.standard_normal(s).astype(np.float32)
    return case


OPTIM_CASE = _optim_case()


def _random_model(name: str, seed: int) -> tuple[nnx.Module, dict[str, np.ndarray]]:
    """Random weights and random BatchNorm statistics (drawn in numpy), in eval mode."""
    shapes = weights.shapes(registry.abstract(name, num_classes=NUM_CLASSES))
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in shapes.items():
        leaf = key.rpartition(".")[2]
        if leaf == "kernel":  # keeps activations O(1) through the deep stacks
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape) / np.sqrt(fan_in)
        elif leaf in ("scale", "var"):
            value = rng.uniform(0.5, 1.5, shape)
        else:  # norm bias, conv/dense bias, mean
            value = rng.normal(0.0, 0.2, shape)
        flat[key] = value.astype(np.float32)
    return registry.create(name, num_classes=NUM_CLASSES, weights=flat), flat


def _logits(model: nnx.Module, x: np.ndarray) -> np.ndarray:
    graphdef, state = nnx.split(model)

    def forward(state, x):
        return nnx.merge(graphdef, state)(x)

    compiled = jax.jit(forward).lower(state, x).compile(compiler_options=_FAST_COMPILE)
    return np.asarray(compiled(state, jnp.asarray(x)))


@pytest.fixture(scope="module")
def flax_side(tmp_path_factory):
    """Random canonical weights and Flax eval logits for every supported model, in one folder.

    Returns (dir, {name: (model, flat)}).
    """
    d = tmp_path_factory.mktemp("ascend_port")
    rng = np.random.default_rng(0)
    inputs = {f"x{s}": rng.standard_normal((2, s, s, 3)).astype(np.float32) for s in SIZES}
    np.savez(d / "inputs.npz", **inputs)
    out = {}
    for i, name in enumerate(NAMES):
        model, flat = _random_model(name, seed=i)
        weights.save(model, d / f"{name}.safetensors")
        np.savez(d / f"{name}.logits.npz", **{k: _logits(model, x) for k, x in inputs.items()})
        out[name] = (model, flat)
    return d, out


@pytest.fixture(scope="module")
def port(flax_side):
    """Runs every MindSpore-side check once, over all models. Returns (dir, results, models)."""
    ascend_python()
    d, models_ = flax_side
    manifest = {
        "names": NAMES,
        "num_classes": NUM_CLASSES,
        "mismatch": "hardnet39ds",
        "onnx": "hardnet39ds",
        "zoo": sorted(zoo.FORMATS),
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    np.savez(d / "optim_case.npz", **OPTIM_CASE)
    run_ascend(["-m", "tests.ascend_side.check_port", str(d)])
    return d, json.loads((d / "results.json").read_text()), models_


def _ok(results: dict, key: str) -> dict:
    value = results[key]
    if isinstance(value, dict) and "error" in value:
        pytest.fail(f"{key} failed on the MindSpore side:\n{value['traceback']}")
    return value


# --------------------------------------------------------------------------- cheap, no MindSpore
def test_supported_names_and_metadata_match_models_registry():
    for family in {port_registry.info(n).family for n in NAMES}:
        assert port_registry.names(family) == models.names(family)
    for name in NAMES:
        ours, theirs = port_registry.info(name), models.info(name)
        for field in (
            "family",
            "input_size",
            "crop_pct",
            "interpolation",
            "mean",
            "std",
            "default_num_classes",
        ):
            assert getattr(ours, field) == getattr(theirs, field), (name, field)
    with pytest.raises(KeyError, match="known: hardnet39ds"):
        port_registry.info("resnet50")


def test_canonical_file_format_is_shared():
    assert canonical.FORMAT == weights.FORMAT


@pytest.mark.parametrize("name", NAMES)
def test_bridge_names_invert_on_the_model_tree(flax_side, name):
    shapes = weights.shapes(flax_side[1][name][0])
    to_ms = bridge.canonical_to_ms_names(shapes)
    assert bridge.ms_to_canonical_names(to_ms.values()) == {v: k for k, v in to_ms.items()}
    ms_shapes = {
        to_ms[k]: layout.from_flax_layout(np.empty(s, np.uint8)).shape
        if k.endswith(".kernel")
        else s
        for k, s in shapes.items()
    }
    assert bridge.ms_shapes_to_canonical(ms_shapes) == shapes
    leaves = {v.rpartition(".")[2] for v in to_ms.values()}
    assert leaves == {"weight", "gamma", "beta", "moving_mean", "moving_variance", "bias"}


def test_bridge_rejects_names_it_cannot_invert():
    with pytest.raises(ValueError, match="blocks.0.gamma"):  # a layer-scale parameter
        bridge.canonical_to_ms_names(["blocks.0.gamma", "blocks.0.fc.kernel"])


def test_optimizer_state_is_recognised_only_outside_the_model():
    flat = {
        "moments.base.0.conv.weight": 0,
        "adam_m.x.weight": 0,
        "global_step": 0,
        "learning_rate": 0,
        "base.0.conv.weight": 0,
        "momentum": 0,
    }
    kept, dropped = bridge.drop_optimizer_state(flat, keep=["base.0.conv.weight", "momentum"])
    assert sorted(kept) == ["base.0.conv.weight", "momentum"]
    assert len(dropped) == 4


@pytest.mark.parametrize("name", ["cosine", "linear", "step"])
def test_schedule_matches_train_lib(name):
    from train_lib import optim as jax_optim

    c = base_config.get_config()
    c.train.batch_size, c.schedule.reference_batch_size, c.schedule.name = 512, 256, name
    c.schedule.lr_max, c.schedule.lr_init, c.schedule.lr_end = 0.1, 0.01, 1e-4
    c.schedule.warmup_epochs, c.schedule.boundaries_epochs = 1.5, (3, 6)
    ours = schedule.learning_rates(c, steps_per_epoch=10, total_steps=90, global_batch=512)
    theirs = jax_optim.create_schedule(c, steps_per_epoch=10, total_steps=90)
    np.testing.assert_allclose(ours, [theirs(i) for i in range(90)], rtol=1e-5, atol=1e-7)
    assert np.isclose(ours[15], 0.2)  # lr_max scaled by 512 / 256 at the end of the warmup


# --------------------------------------------------------------------------- against MindSpore
def test_ascend_side_imports_no_jax(port):
    _, results, _ = port
    assert results["supported"] == NAMES
    assert results["forbidden_modules"] == []


@pytest.mark.parametrize("name", NAMES)
def test_cell_matches_flax_logits(port, name):
    _, results, _ = port
    parity = _ok(results, f"parity/{name}")
    for key, r in parity.items():
        assert r["max_abs_diff"] <= TOL, (name, key, r)
        assert r["argmax_equal"], (name, key, r)


@pytest.mark.parametrize("name", NAMES)
def test_round_trip_canonical_ckpt_canonical_is_bit_exact(port, name):
    d, results, flax_side = port
    r = _ok(results, f"roundtrip/{name}")
    assert r["same_keys"] and r["bit_exact"], r
    assert r["metadata"]["model"] == name and r["metadata"]["num_classes"] == str(NUM_CLASSES)
    model, flat = flax_side[name]
    back, meta = weights.read(d / f"{name}.rt.safetensors")  # the JAX side accepts the file
    assert sorted(back) == sorted(flat)
    assert all(np.array_equal(back[k], flat[k]) for k in flat)
    weights.load(model, back, context="round trip")


def test_mismatched_keys_are_named(port):
    _, results, _ = port
    r = _ok(results, "mismatch")
    assert r["canonical_error"] is not None
    for key in (r["removed"], r["reshaped"], r["added"]):
        assert key in r["canonical_error"], (key, r["canonical_error"])
    assert "missing keys" in r["canonical_error"] and "shape mismatches" in r["canonical_error"]
    assert r["ckpt_error"] is not None and r["ckpt_removed"] in r["ckpt_error"]


@pytest.mark.parametrize("fmt", sorted(zoo.FORMATS))
def test_zoo_checkpoint_converts_without_missing_or_unexpected_keys(port, fmt):
    _, results, _ = port
    r = _ok(results, f"zoo/{fmt}")
    assert r["zoo_entries"] == r["spec_entries"] == r["canonical_keys"], r
    assert r["values_in_place"], r
    assert r["metadata"]["model"] == zoo.get(fmt).model


def _optax_reference(name: str):
    """The optax chains whose semantics the config fields name (configs/base.py)."""
    c = base_config.get_config().optim
    lrs = jnp.asarray(OPTIM_CASE["lrs"])

    def lr(step):
        return lrs[step]

    wd = float(OPTIM_CASE["weight_decay"])
    mask = {"fc.weight": True, "norm.gamma": False}  # decay_norm_and_bias=False
    if name == "adamw":
        return optax.adamw(lr, c.adam_b1, c.adam_b2, c.adam_eps, weight_decay=wd, mask=mask)
    decay = optax.add_decayed_weights(wd, mask)
    if name == "sgd":
        return optax.chain(decay, optax.sgd(lr, momentum=c.momentum, nesterov=c.nesterov))
    # TF placement: eps inside the sqrt; MindSpore (like TF1) starts the mean square at 1.
    return optax.chain(
        decay,
        optax.rmsprop(
            lr,
            decay=c.rmsprop_decay,
            eps=c.eps,
            initial_scale=1.0,
            eps_in_sqrt=True,
            momentum=c.momentum,
        ),
    )


@pytest.mark.parametrize("name", ["sgd", "rmsprop", "adamw"])
def test_optimizers_match_optax(port, name):
    d, results, _ = port
    _ok(results, "optimizers")
    got = np.load(d / "optim_result.npz")
    keys = ("fc.weight", "norm.gamma")
    params = {k: jnp.asarray(OPTIM_CASE[f"w0/{k}"]) for k in keys}
    tx = _optax_reference(name)
    state = tx.init(params)
    for step in range(len(OPTIM_CASE["lrs"])):
        grads = {k: jnp.asarray(OPTIM_CASE[f"g{step}/{k}"]) for k in keys}
        updates, state = tx.update(grads, state, params)
        params = optax.apply_updates(params, updates)
        for k in keys:
            np.testing.assert_allclose(
                got[f"{name}/{step}/{k}"],
                params[k],
                atol=1e-6,
                rtol=1e-5,
                err_msg=f"{name} step {step} {k}",
            )


def test_onnx_export_matches_flax(port):
    _, results, _ = port
    r = _ok(results, "onnx/hardnet39ds")
    assert r["max_abs_diff"] <= TOL and r["argmax_equal"], r


# --------------------------------------------------------------------------- CLIs
def _image_folder(root, classes: int = 3, train: int = 8, val: int = 3) -> int:
    """Solid colours plus noise, one colour per class: learnable in a few steps."""
    from PIL import Image

    rng = np.random.default_rng(0)
    colours = [(220, 40, 40), (40, 200, 40), (40, 40, 220), (200, 200, 40)][:classes]
    for split, n in (("train", train), ("val", val)):
        for c, colour in enumerate(colours):
            folder = root / split / f"class_{c}"
            folder.mkdir(parents=True)
            for i in range(n):
                pixels = np.asarray(colour)[None, None] + rng.normal(0, 30, (40, 48, 3))
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(folder / f"{i}.jpg")
    return classes * val


@pytest.mark.xdist_group("ascend_train")
def test_train_lowers_loss_and_eval_reads_its_checkpoint(tmp_path):
    ascend_python()
    n_val = _image_folder(tmp_path / "data")
    common = [
        "--config",
        "configs/base.py",
        "--config.model.name=hardnet39ds",
        "--config.model.num_classes=3",
        "--config.data.image_size=32",
    ]
    run_ascend(
        [
            "-m",
            "ascend_port.train",
            *common,
            "--data",
            str(tmp_path / "data"),
            "--output_dir",
            str(tmp_path / "run"),
            "--device_target",
            "CPU",
            "--config.train.batch_size=8",
            "--config.train.steps=18",
            "--config.train.log_every_steps=1",
            "--config.schedule.lr_max=0.02",
            "--config.schedule.reference_batch_size=8",
            "--config.ascend.save_every_epochs=1",
            "--config.ascend.keep_checkpoints=2",
        ]
    )
    records = [
        json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()
    ]
    losses = [r["loss"] for r in records]
    assert len(losses) == 18 and all(np.isfinite(losses))
    # Batches of 8 with BatchNorm are noisy: the median resists a single bad batch.
    assert np.median(losses[-6:]) < 0.5 * np.mean(losses[:3]), losses
    ckpts = sorted((tmp_path / "run" / "checkpoints").glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["hardnet39ds-e0005.ckpt", "hardnet39ds-e0006.ckpt"]
    out = run_ascend(
        [
            "-m",
            "ascend_port.eval",
            *common,
            "--ckpt",
            str(ckpts[-1]),
            "--device_target",
            "CPU",
            "--data",
            str(tmp_path / "data"),
            "--mode",
            "pynative",
            "--batch_size",
            "4",
        ]
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["count"] == n_val
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0

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
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import models
from ascend_port import bridge, zoo
from ascend_port import registry as port_registry
from configs import base as base_config
from models import layout, registry, weights
from tests import cli
from tests.variants import SAME_CODE_PATHS

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NAMES = port_registry.names()  # what the MindSpore side supports
NUM_CLASSES = 10
TOL = 1e-4
_FAST_COMPILE = {"xla_backend_optimization_level": 0, "xla_llvm_disable_expensive_passes": True}

# (batch, input sizes) of each family's parity check. Even and odd sizes check padding, pooling
# and HRNet's fuse upsampling to a non-integer factor; HLG takes 224x224 only.
PARITY_INPUTS = {
    "hardnet": (2, (64, 67)),
    "hrnet": (1, (64, 67)),
    "hlg": (1, (224,)),
    "hlg_zoo": (1, (224,)),
}
# The input size of a width/depth-only variant (tests/variants.py): its representative runs the
# full checks above; the variant's own numbers (widths, depths, downsampling) still meet one
# forward pass (but NO_FORWARD's), at a small odd size.
SMALL_INPUT = {"hardnet": 33}
# These skip the forward (names, shapes and values still round-trip exactly). A variant here is
# its representative's code with the numbers of its row in a table both sides build from
# (models/hlg_arch.CONFIGS, models/hrnet_arch.CONFIGS), and every one of those numbers is in the
# shapes or names that round-trip: HLG widths and depths, and its head counts (each block's
# position-bias MLP ends in one output per head); HRNet widths, stage-1 blocks and planes,
# module and block counts. Their forwards checked nothing more, at a price: HLG takes 224 px
# only, where a PyNative forward costs ~15-25 CPU-s per variant (hlg_small's 3-6-12-24 heads
# of 32 ran in 15; hlg_mobile runs 2-4-6-12 heads of 16, hlg_tiny_dwconv 2-4-8-16 heads of 32
# with hlg_tiny's numbers), an HRNet one ~10 CPU-s at 33 px. HRNet's logits are checked against
# timm in tests/test_parity_hrnet.py.
NO_FORWARD = (
    *(n for n, rep in SAME_CODE_PATHS.items() if rep == "hlg_mobile"),
    *(n for n, rep in SAME_CODE_PATHS.items() if rep == "hrnet_w18_small"),
)
# Logits are compared for every variant but NO_FORWARD; width/depth-only ones at SMALL_INPUT,
# their interface without forward passes, their weights round-tripped in memory (names, shapes,
# values) instead of through .ckpt files, whose conversion code their representative runs.
PARITY_NAMES = NAMES
REPRESENTATIVES = [name for name in NAMES if name not in SAME_CODE_PATHS]
# timm's interface with a forward pass (forward_head(forward_features(x)) == cell(x), the shapes
# in between) on the first representative of each family: a family is one cell class, whose
# forward_features and forward_head the other variants run unchanged (the classifier base class
# defines the call as their composition); their logits still meet Flax's in the parity check.
FORWARD_INTERFACE = [
    next(n for n in REPRESENTATIVES if port_registry.info(n).family == family)
    for family in PARITY_INPUTS
]
ONNX_NAMES = ["hardnet39ds", "hrnet_w18_small", "hlg_mobile"]  # one per family, hlg_zoo aside
MINDIR_NAMES = ["hardnet39ds", "hrnet_w18_small", "hlg_mobile"]
# Eval preprocessing of ascend_port.data against input_pipeline, on PNGs (lossless: the two JPEG
# decoders differ, see ascend_port/data.py) of odd sizes and aspect ratios.
EVAL_PREPROCESS = {"image_size": 32, "crop_pct": 0.875, "interpolations": ["bilinear", "bicubic"]}
PREPROCESS_SIZES = [(40, 48), (57, 33), (101, 77), (64, 64), (300, 211), (35, 35)]

# Tests sharing a module fixture share an xdist group (one worker builds it once); the others
# spread over the workers. flax_side and port: "ascend_port"; bad_files: "ascend_bad_files".
PORT_GROUP = pytest.mark.xdist_group("ascend_port")
BAD_FILES_GROUP = pytest.mark.xdist_group("ascend_bad_files")


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


def python_path(root: str = REPO) -> str:
    """PYTHONPATH for a subprocess: `root` first, then this process's entries (the suite's
    tests/site, tests/conftest.py)."""
    return os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))


def ascend_env(extra: dict | None = None) -> dict:
    """The environment of a MindSpore-side process: ours, the repository importable, protobuf's
    upb implementation (reads big .ckpt files fast; ascend_port sets it too), plus `extra`."""
    return dict(
        os.environ,
        PYTHONPATH=python_path(),
        PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="upb",
        **(extra or {}),
    )


def run_ascend(
    args: list[str], timeout: float = 400, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`$HHL_ASCEND_PYTHON ARGS` from the repository root (with `env` added); fails the test
    with its output unless it exits 0."""
    env = ascend_env(env)
    proc = subprocess.run(
        [ascend_python(), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )
    if proc.returncode:
        pytest.fail(
            f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-6000:]}"
        )
    return proc


def test_suite_configures_mindspore_cpu_kernel_threads_at_import():
    """tests/site/sitecustomize.py sets the thread count as mindspore is imported, in every
    MindSpore interpreter the suite starts: a second setting is refused."""
    script = (
        "import mindspore as ms\n"
        "try:\n"
        "    ms.device_context.cpu.op_tuning.threads_num(2)\n"
        "except RuntimeError as e:\n"
        "    print('refused:', e)\n"
    )
    assert (
        "refused: The 'threads_num' can not be set repeatedly" in run_ascend(["-c", script]).stdout
    )


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
    """Random weights and random BatchNorm statistics (drawn in numpy), in eval mode.

    The weights are loaded into the abstract model (no random init to compile; the RNG streams
    stay abstract, which eval mode never reads). HRNet gets smaller BatchNorm scales: its residual and fuse sums otherwise grow block after
    block (W18 logits ~1e4 with U(0.5, 1.5)), where a 1e-4 absolute tolerance means nothing.
    """
    family = port_registry.info(name).family
    model = registry.abstract(name, num_classes=NUM_CLASSES)
    scale = (0.2, 0.6) if family == "hrnet" else (0.5, 1.5)
    rng = np.random.default_rng(seed)
    flat = {}
    for key, shape in weights.shapes(model).items():
        leaf = key.rpartition(".")[2]
        if leaf == "kernel":  # keeps activations O(1) through the deep stacks
            fan_in = int(np.prod(shape[:-1]))
            value = rng.standard_normal(shape, np.float32) / np.float32(np.sqrt(fan_in))
        elif leaf == "scale":
            value = rng.uniform(*scale, shape)
        elif leaf == "var":
            value = rng.uniform(0.5, 1.5, shape)
        else:  # norm bias, conv/dense bias, mean, position embeddings
            value = rng.normal(0.0, 0.2, shape)
        flat[key] = value.astype(np.float32)  # kernels drawn in float32: 0.6 G values in all
    weights.load(model, flat, context=name)
    model.variant, model.num_classes = name, NUM_CLASSES  # read by weights.save
    model.eval()
    return model, flat


def _logits(model: nnx.Module, x: np.ndarray) -> np.ndarray:
    """Eval logits, jitted with the weights as arguments (the RNG state is a constant)."""
    graphdef, state, rest = nnx.split(model, (nnx.Param, nnx.BatchStat), ...)

    def forward(state, x):
        return nnx.merge(graphdef, state, rest)(x)

    compiled = jax.jit(forward).lower(state, x).compile(compiler_options=_FAST_COMPILE)
    return np.asarray(compiled(state, jnp.asarray(x)))


def _input_key(batch: int, size: int) -> str:
    return f"b{batch}_{size}"


def _parity_keys(name: str) -> list[str]:
    """Every input size on a family's representatives; their width/depth-only variants
    (tests/variants.py) run the same padding and resizing code, so SMALL_INPUT serves."""
    family = port_registry.info(name).family
    batch, sizes = PARITY_INPUTS[family]
    if name in SAME_CODE_PATHS:
        sizes = () if name in NO_FORWARD else (SMALL_INPUT[family],)
    return [_input_key(batch, s) for s in sizes]


@pytest.fixture(scope="module")
def flax_side(tmp_path_factory):
    """Random canonical weights for every supported model and Flax eval logits for PARITY_NAMES,
    in one folder (big files deleted at the end). Returns (dir, {name: canonical shapes}): the
    models themselves are not kept (all of them hold ~2.4 GB of weights)."""
    d = tmp_path_factory.mktemp("ascend_port")
    rng = np.random.default_rng(0)
    batches = {
        (batch, s)
        for family, (batch, sizes) in PARITY_INPUTS.items()
        for s in (*sizes, *([SMALL_INPUT[family]] if family in SMALL_INPUT else []))
    }
    inputs = {
        _input_key(batch, s): rng.standard_normal((batch, s, s, 3)).astype(np.float32)
        for batch, s in sorted(batches)
    }
    np.savez(d / "inputs.npz", **inputs)
    out = {}
    for i, name in enumerate(NAMES):
        model, flat = _random_model(name, seed=i)
        weights.save(model, d / f"{name}.safetensors")
        if name in PARITY_NAMES and _parity_keys(name):
            logits = {k: _logits(model, inputs[k]) for k in _parity_keys(name)}
            np.savez(d / f"{name}.logits.npz", **logits)
        out[name] = {k: v.shape for k, v in flat.items()}
        del model, flat
    yield d, out
    for path in d.iterdir():
        if path.suffix in (".safetensors", ".ckpt", ".onnx"):
            path.unlink()


@pytest.fixture(scope="module")
def port(flax_side):
    """Runs every MindSpore-side check once, over all models. Returns (dir, results, shapes)."""
    ascend_python()
    d, shapes = flax_side
    _preprocess_images(d / "preprocess")
    manifest = {
        "names": NAMES,
        "num_classes": NUM_CLASSES,
        "parity": {name: _parity_keys(name) for name in PARITY_NAMES},
        "forward_interface": FORWARD_INTERFACE,  # the interface checks that need a forward
        "file_round_trip": REPRESENTATIVES,  # the others round-trip in memory
        "mismatch": "hardnet39ds",
        "onnx": ONNX_NAMES,
        "mindir": MINDIR_NAMES,
        "zoo": sorted(zoo.FORMATS),
        "preprocess": {"root": str(d / "preprocess"), **EVAL_PREPROCESS},
    }
    (d / "manifest.json").write_text(json.dumps(manifest))
    np.savez(d / "optim_case.npz", **OPTIM_CASE)
    run_ascend(["-m", "tests.ascend_side.check_port", str(d)], timeout=1500)
    return d, json.loads((d / "results.json").read_text()), shapes


def _preprocess_images(root) -> list:
    """Smooth patterns plus noise as PNGs of PREPROCESS_SIZES in root/val/c0, sorted names."""
    from PIL import Image

    rng = np.random.default_rng(3)
    folder = root / "val" / "c0"
    folder.mkdir(parents=True)
    paths = []
    for i, (h, w) in enumerate(PREPROCESS_SIZES):
        yy, xx = np.mgrid[0:h, 0:w]
        pixels = np.stack(
            [128 + 100 * np.sin(xx / 5.0 + c) * np.cos(yy / 7.0) for c in range(3)], axis=-1
        )
        pixels = np.clip(pixels + rng.normal(0, 20, (h, w, 3)), 0, 255).astype(np.uint8)
        paths.append(folder / f"{i:02d}.png")
        Image.fromarray(pixels).save(paths[-1])
    return paths


def _ok(results: dict, key: str) -> dict:
    value = results[key]
    if isinstance(value, dict) and "error" in value:
        pytest.fail(f"{key} failed on the MindSpore side:\n{value['traceback']}")
    return value


# --------------------------------------------------------------------------- cheap, no MindSpore
def test_every_registered_model_has_a_cell():
    assert NAMES == models.names()
    with pytest.raises(KeyError, match="known: hardnet39ds"):
        port_registry.info("resnet50")


@PORT_GROUP
@pytest.mark.parametrize("name", NAMES)
def test_bridge_names_invert_on_the_model_tree(flax_side, name):
    shapes = flax_side[1][name]
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
    generic = {"weight", "gamma", "beta", "moving_mean", "moving_variance", "bias"}
    assert generic <= leaves
    # Anything else is a top-level parameter that keeps its name (hlg_mobile_zoo: pos_embed*, cls).
    assert leaves - generic == {k for k in shapes if "." not in k}


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


# --------------------------------------------------------------------------- against MindSpore
@PORT_GROUP
def test_ascend_side_imports_no_jax(port):
    _, results, _ = port
    assert results["supported"] == NAMES
    assert results["forbidden_modules"] == []


@PORT_GROUP
def test_private_mindspore_apis_are_still_there(port):
    """ascend_port/compat.py's workarounds need these; an upgrade that drops one fails here."""
    _, results, _ = port
    assert results["compat_missing"] == [], (
        f"MindSpore lacks {results['compat_missing']}: revisit ascend_port/compat.py"
    )


@PORT_GROUP
@pytest.mark.parametrize("name", PARITY_NAMES)
def test_cell_matches_flax_logits(port, name):
    _, results, _ = port
    parity = dict(_ok(results, f"parity/{name}"))
    interface = parity.pop("interface")
    assert sorted(parity) == sorted(_parity_keys(name))
    for key, r in parity.items():
        assert r["max_abs_diff"] <= TOL, (name, key, r)
        assert r["argmax_equal"], (name, key, r)
        assert 0.1 < r["max_abs_logit"] < 100, (name, key, r)  # a meaningful tolerance
    # timm's interface on the cell, as tests/test_models.py checks it on the Flax model: what
    # needs a forward pass on FORWARD_INTERFACE, the rest on every variant.
    info = models.info(name)
    flax_model = registry.abstract(name, num_classes=NUM_CLASSES)
    assert interface["num_classes"] == [NUM_CLASSES, NUM_CLASSES + 3], interface
    assert interface["num_features"] == flax_model.num_features, interface
    assert interface["same_names_after_reset"] and interface["reset_kept_backbone"], interface
    assert interface["reset_changed"], interface  # the head's kernel (and bias) changed shape
    batch = PARITY_INPUTS[info.family][0]
    if name not in FORWARD_INTERFACE:
        assert "head_equals_call" not in interface, interface
        return
    assert interface["features_shape"] == [batch, flax_model.num_features], interface
    assert interface["head_equals_call"], interface
    assert interface["reset_logits_shape"] == [batch, NUM_CLASSES + 3], interface


@PORT_GROUP
@pytest.mark.parametrize("name", NAMES)
def test_round_trip_canonical_ckpt_canonical_is_bit_exact(port, name):
    d, results, shapes = port
    r = _ok(results, f"roundtrip/{name}")
    assert r["same_keys"] and r["bit_exact"], {k: v for k, v in r.items() if k != "shapes"}
    assert r["metadata"]["model"] == name and r["metadata"]["num_classes"] == str(NUM_CLASSES)
    if name not in REPRESENTATIVES:  # in memory: the cell's own canonical tree is the Flax tree
        assert {k: tuple(s) for k, s in r["shapes"].items()} == shapes[name]
        assert not (d / f"{name}.rt.safetensors").exists()
        return
    flat, _ = weights.read(d / f"{name}.safetensors")
    back, meta = weights.read(d / f"{name}.rt.safetensors")  # the JAX side reads the file ...
    assert meta["model"] == name
    assert sorted(back) == sorted(flat)
    assert all(back[k].dtype == flat[k].dtype and np.array_equal(back[k], flat[k]) for k in flat)
    weights.check_compatible(shapes[name], back, "round trip")  # ... and it fits the model


@PORT_GROUP
def test_mismatched_keys_are_named(port):
    _, results, _ = port
    r = _ok(results, "mismatch")
    assert r["canonical_error"] is not None
    for key in (r["removed"], r["reshaped"], r["added"]):
        assert key in r["canonical_error"], (key, r["canonical_error"])
    assert "missing keys" in r["canonical_error"] and "shape mismatches" in r["canonical_error"]
    assert r["ckpt_error"] is not None and r["ckpt_removed"] in r["ckpt_error"]


@PORT_GROUP
def test_ckpt_loads_when_page_cache_leaves_little_memfree(port):
    """MindSpore 2.10 compares a .ckpt's size with MemFree (page cache excluded) and refuses it;
    CI failed on HRNet-W40 with 220 MB 'available' of 24 GB. ascend_port checks MemAvailable."""
    _, results, _ = port
    r = _ok(results, "low_memfree")
    assert r["plain_error"] and "exceeds current available memory" in r["plain_error"]
    assert r["loaded_equal"]
    assert r["mem_available"] > 0


@PORT_GROUP
@pytest.mark.parametrize("fmt", sorted(zoo.FORMATS))
def test_zoo_checkpoint_converts_without_missing_or_unexpected_keys(port, fmt):
    _, results, _ = port
    r = _ok(results, f"zoo/{fmt}")
    assert r["zoo_entries"] == r["spec_entries"] == r["canonical_keys"], r
    assert r["training_entries"] > 0 and r["values_in_place"], r
    assert r["metadata"]["model"] == zoo.get(fmt).model
    assert r["num_classes"] == port_registry.info(zoo.get(fmt).model).default_num_classes


def test_zoo_formats_cover_the_issue():
    assert {"HRNetW48_cls", "hlg", "hardnet68", "hardnet85"} <= set(zoo.FORMATS)
    assert zoo.get("HRNetW48_cls").model == "hrnet_w48"
    assert zoo.get("hlg").model == "hlg_mobile_zoo"


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
    # TF placement: eps inside the sqrt; MindSpore (like TF1) starts the mean square at 1 and
    # keeps the lr inside the momentum (mom = m * mom + lr * g / rms).
    return optax.chain(
        decay,
        optax.scale_by_rms(decay=c.rmsprop_decay, eps=c.eps, eps_in_sqrt=True, initial_scale=1.0),
        optax.scale_by_learning_rate(lr),
        optax.trace(decay=c.momentum),
    )


@PORT_GROUP
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


@PORT_GROUP
def test_eval_preprocessing_matches_input_pipeline(port):
    """ascend_port.data crops the JAX side's window and resizes it once, antialiased: within a
    grey level or so of input_pipeline.preprocess.eval_image (resizing first then cropping, the
    old way, was off by up to ~100 on these images)."""
    from input_pipeline import preprocess
    from input_pipeline.tf_runtime import tf

    d, results, _ = port
    assert _ok(results, "preprocess")["images"] == len(PREPROCESS_SIZES)
    got = np.load(d / "preprocess_result.npz")
    paths = sorted((d / "preprocess" / "val" / "c0").glob("*.png"))
    for interpolation in EVAL_PREPROCESS["interpolations"]:
        ours = got[interpolation]
        for i, path in enumerate(paths):
            ref = preprocess.eval_image(
                tf.io.read_file(str(path)),
                size=EVAL_PREPROCESS["image_size"],
                crop_pct=EVAL_PREPROCESS["crop_pct"],
                interpolation=interpolation,
            ).numpy()
            diff = np.abs(ours[i] - ref)
            assert diff.max() <= 6 and diff.mean() <= 0.5, (interpolation, path.name, diff.max())


@PORT_GROUP
@pytest.mark.parametrize("name", ONNX_NAMES)
def test_onnx_export_matches_flax(port, name):
    _, results, _ = port
    r = _ok(results, f"onnx/{name}")
    assert r["max_abs_diff"] <= TOL and r["argmax_equal"], r


@PORT_GROUP
@pytest.mark.parametrize("name", MINDIR_NAMES)
def test_mindir_export_loads_as_graph_cell_with_the_cells_logits(port, name):
    """ascend_port.export writes MindIR; mindspore.load + nn.GraphCell gives the cell's logits."""
    _, results, _ = port
    r = _ok(results, f"mindir/{name}")
    assert r["path"].endswith(".mindir") and r["shape"][1] == NUM_CLASSES, r
    assert r["max_abs_diff"] <= 1e-5 and r["argmax_equal"], r


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


@pytest.mark.slow
@pytest.mark.xdist_group("ascend_train")
def test_train_resumes_mid_epoch_lowers_loss_and_eval_reads_its_checkpoint(tmp_path):
    """python -m ascend_port trains 10 steps and stops (train.stop_after_steps), a second run
    resumes from the step-10 checkpoint in the middle of epoch 4 and trains to 18; the loss falls,
    metrics.jsonl holds one row per step and split, eval runs during training, and
    python -m ascend_port.eval evaluates the newest checkpoint of the workdir. The two trainings
    run in graph mode: their first 10 steps took 88 CPU-s in PyNative, 20 compiled (compile
    included); the one- and three-step runs of the other tests stay PyNative. The resumed run
    loads the first run's compiled graph from MindSpore's compile cache (the same network and
    step: ~44 -> ~33 CPU-s for this test)."""
    ascend_python()
    cache = {"MS_COMPILER_CACHE_ENABLE": "1", "MS_COMPILER_CACHE_PATH": str(tmp_path / "cache")}
    n_val = _image_folder(tmp_path / "data")
    workdir = tmp_path / "run"
    common = cli.ascend_run_args(workdir, tmp_path / "data")  # PyNative: no graph compiles
    train = [
        "-m",
        "ascend_port",
        *common,
        "--config.ascend.mode=graph",  # overrides common's pynative
        "--config.train.batch_size=8",
        "--config.train.steps=18",
        "--config.train.log_every_steps=1",
        "--config.train.checkpoint_every_steps=3",
        "--config.train.keep_checkpoints=2",
        "--config.train.eval_every_epochs=4",  # 3 steps per epoch: evals at 12 and 18
        "--config.schedule.lr_max=0.02",
        "--config.schedule.reference_batch_size=8",
    ]
    run_ascend([*train, "--config.train.stop_after_steps=10"], env=cache)
    ckpts = sorted((workdir / "checkpoints").glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["hardnet39ds-s00000009.ckpt", "hardnet39ds-s00000010.ckpt"]
    out = run_ascend(train, env=cache)
    assert "resumed from step 10" in out.stderr
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert [r["step"] for r in train_rows] == list(range(1, 19))
    assert [r["step"] for r in rows if r["split"] == "eval"] == [12, 18]
    losses = [r["loss"] for r in train_rows]
    assert all(np.isfinite(losses))
    # Batches of 8 with BatchNorm are noisy: the median resists a single bad batch.
    assert np.median(losses[-6:]) < 0.5 * np.mean(losses[:3]), losses
    ckpts = sorted((workdir / "checkpoints").glob("*.ckpt"))
    assert [c.name for c in ckpts] == ["hardnet39ds-s00000015.ckpt", "hardnet39ds-s00000018.ckpt"]
    assert json.loads((workdir / "config.json").read_text())["model"]["name"] == "hardnet39ds"
    assert (workdir / "plots" / "curves.png").stat().st_size > 10_000  # drawn from metrics.jsonl
    run_ascend(["-m", "ascend_port.eval", *common, "--config.train.eval_batch_size=4"])
    result = json.loads((workdir / "eval_result.json").read_text())
    assert result["examples"] == n_val
    assert result["weights"].endswith("hardnet39ds-s00000018.ckpt")
    assert 0.0 <= result["top1"] <= result["top5"] <= 1.0
    confusion = np.asarray(result["confusion"])  # [true, predicted], as the JAX side writes it
    assert confusion.sum() == n_val and np.trace(confusion) == round(result["top1"] * n_val)
    assert [c["name"] for c in result["per_class"]] == ["class_0", "class_1", "class_2"]
    assert (workdir / "plots" / "confusion.png").stat().st_size > 10_000


@pytest.mark.slow
@pytest.mark.xdist_group("ascend_train")
def test_finetune_loads_the_backbone_and_starts_a_fresh_head(tmp_path):
    """10-class weights fine-tuned on a 3-class folder: one log line names the skipped classifier,
    the backbone starts from the file (frozen for the whole run here, so it still equals it),
    the head has the new width. The 10-class file is written by the JAX side (random weights,
    no MindSpore start); one step trains the head (more would add ~8 CPU-s each in PyNative)."""
    from safetensors.numpy import load_file

    source = tmp_path / "ten.safetensors"
    model, _ = _random_model("hardnet39ds", seed=0)
    assert model.num_classes == 10
    weights.save(model, source)
    _image_folder(tmp_path / "data")
    workdir = tmp_path / "run"
    common = cli.ascend_run_args(workdir, tmp_path / "data")
    train = [
        "-m",
        "ascend_port",
        *common,
        f"--config.init_from={source}",
        "--config.train.batch_size=8",
        "--config.train.steps=1",
        "--config.train.eval_every_epochs=100",
        "--config.train.freeze_backbone_epochs=100",
        "--config.optim.backbone_lr_scale=0.1",
    ]
    out, _ = run_ascend_clis(
        [train, ["-m", "ascend_port", *common, "--mode=export"]], tmp_path / "clis"
    )
    skipped = [line for line in out["stderr"].splitlines() if "but the classifier" in line]
    assert len(skipped) == 1 and "base.14.3.kernel" in skipped[0], out["stderr"][-2000:]
    tuned = load_file(str(workdir / "export" / "hardnet39ds.safetensors"))
    start = load_file(str(source))
    conv = "base.0.conv.kernel"
    assert np.array_equal(tuned[conv], start[conv])  # loaded, then frozen
    head = "base.14.3.kernel"
    assert start[head].shape[-1] == 10 and tuned[head].shape[-1] == 3


_RESUME_ORDER = """
import json, os, sys
import numpy as np
import mindspore as ms
from PIL import Image
from ascend_port import data, sampler
from configs import base

root = sys.argv[1]
for c in range(12):  # one image per class: a label names its image
    os.makedirs(f"{root}/train/c{c:02d}")
    Image.fromarray(np.full((8, 8, 3), 20 * c, np.uint8)).save(f"{root}/train/c{c:02d}/0.png")
ms.set_device("CPU")
config = base.get_config()
config.model.name, config.model.num_classes, config.data.image_size = "hardnet39ds", 12, 8


def batches(rank, size, start, passes):
    order = sampler.ResumableShuffle(12, seed=0, rank=rank, group_size=size, start=start)
    ds = data.train_dataset(config, root, batch_size=2, sampler=order)
    it = ds.create_tuple_iterator(num_epochs=passes, output_numpy=True)  # as Model.train
    return [b[1].tolist() for _ in range(passes) for b in it]


print(json.dumps({
    "full": batches(0, 1, 0, 3),  # 3 epochs of 6 steps
    "resumed": batches(0, 1, 10 * 2, 2),  # from the checkpoint of step 10: epoch 1, 4 steps in
    "ranks": [batches(r, 2, 0, 1) for r in range(2)],
}))
"""


@pytest.mark.slow
def test_resumed_run_reads_the_batches_an_uninterrupted_run_reads(tmp_path):
    """The train dataset of a run resumed from step 10 (mid-epoch) yields exactly the batches
    steps 11.. of an uninterrupted run get; each epoch is a new order; ranks read disjoint
    halves. 12 classes of one image each, so the label sequence is the image sequence."""
    out = run_ascend(["-c", _RESUME_ORDER, str(tmp_path / "data")])
    got = json.loads(out.stdout.strip().splitlines()[-1])
    full = got["full"]
    resumed = got["resumed"]  # 2 full-length passes, straddling epochs 1-2 and 2-3
    assert len(full) == 18 and len(resumed) == 12 and resumed[:8] == full[10:]
    epochs = [sorted(sum(full[i : i + 6], [])) for i in (0, 6, 12)]
    assert all(e == list(range(12)) for e in epochs)  # every image once per epoch
    assert full[:6] != full[6:12]  # reshuffled
    rank0, rank1 = (sum(r, []) for r in got["ranks"])
    assert sorted(rank0 + rank1) == list(range(12))


@pytest.mark.slow
@pytest.mark.xdist_group("digits_run")
def test_same_checkpoint_evaluates_the_same_on_digits(tmp_path, digits_run):
    """main.py trains the demo briefly and exports (the conftest fixture digits_run);
    ascend_port.convert makes a .ckpt of it; ascend_port.eval and main.py --mode=eval
    (train_lib.evaluate on the workdir) agree on top-1 to within one image. Both sides crop and
    resize the same way (none of either: the digits are 32x32 and the demo's crop_pct is 1) and
    decode JPEGs with the same accurate IDCT; the two frameworks' float arithmetic may still
    move a borderline image."""
    import shutil

    from configs import demo
    from input_pipeline import digits
    from train_lib import evaluate

    config = demo.get_config()
    config.train.steps = 60  # as digits_run trained it: eval reads its last checkpoint
    config.train.tensorboard = False
    workdir = str(tmp_path / "run")
    shutil.copytree(digits_run["workdir"], workdir)  # evaluate writes its report there
    exported = digits_run["export"]
    jax_result = evaluate.run(config, workdir)  # what main.py --mode=eval runs
    ckpt = str(tmp_path / "hardnet39ds.ckpt")
    ms_workdir = tmp_path / "ms"
    evaluate = [
        "-m",
        "ascend_port",
        "--mode=eval",
        "--config",
        "configs/demo.py",
        "--workdir",
        str(ms_workdir),
        f"--config.init_from={ckpt}",
        "--config.ascend.device_target=CPU",
    ]
    run_ascend_clis([["-m", "ascend_port.convert", exported, ckpt], evaluate], tmp_path / "clis")
    ms_result = json.loads((ms_workdir / "eval_result.json").read_text())
    ms_result["count"] = ms_result["examples"]
    print(f"digits top-1: JAX {jax_result['top1']:.4f}, MindSpore {ms_result['top1']:.4f}")
    assert ms_result["count"] == jax_result["examples"] == digits.NUM_VAL
    assert jax_result["top1"] > 0.5, jax_result  # trained, far from chance (0.1)
    assert abs(ms_result["top1"] - jax_result["top1"]) * digits.NUM_VAL <= 1 + 1e-9, (
        ms_result,
        jax_result,
    )


# --------------------------------------------------------------------------- user mistakes
_MAKE_BAD_FILES = """
import sys, numpy as np, mindspore as ms
d = sys.argv[1]
params = [{"name": "w", "data": ms.Tensor(np.ones((64, 64), np.float32))}]
ms.save_checkpoint(params, d + "/good.ckpt")
data = open(d + "/good.ckpt", "rb").read()
open(d + "/truncated.ckpt", "wb").write(data[: len(data) // 2])
open(d + "/empty.ckpt", "wb").close()
head = [{"name": "head.dense.weight", "data": ms.Tensor(np.ones((10, 1024), np.float32))},
        {"name": "head.dense.bias", "data": ms.Tensor(np.ones((10,), np.float32))}]
ms.save_checkpoint(head, d + "/foreign.ckpt")
import ascend_port
from ascend_port import weights
from models import canonical
cell = ascend_port.create("hardnet39ds", num_classes=10)  # written without naming its model
canonical.write(weights.canonical_flat(cell), d + "/unnamed_hardnet39ds.safetensors")
"""


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_files")
    run_ascend(["-c", _MAKE_BAD_FILES, str(d)])
    (d / "garbage.safetensors").write_bytes(b"not safetensors at all" * 10)
    (d / "model.pth").write_bytes(b"PK\x03\x04" + b"\0" * 60)
    (d / "a_file").write_text("")
    other = d / "other_model" / "checkpoints"
    other.mkdir(parents=True)
    (other / "hardnet68-s00000003.ckpt").write_bytes(b"x")
    from configs import demo

    resumable = d / "resumable" / "checkpoints"  # trained with the demo config as it is
    resumable.mkdir(parents=True)
    (resumable / "config.json").write_text(demo.get_config().to_json_best_effort())
    (resumable / "hardnet39ds-s00000003.ckpt").write_bytes(b"x")
    return d


_BASE = ["--config", "configs/demo.py", "--config.ascend.device_target=CPU"]
# (arguments after `python -m ascend_port` or `-m ascend_port.convert`, what the line names).
# {d} is the fixture's folder, {w} a fresh workdir (or one of the fixture's). The config mistakes
# both CLIs share are in SHARED_MISTAKES (one MindSpore start each, not two).
BAD_INPUTS = {
    "source": (["--workdir", "{w}", "--config.data.source=imagenet"], "imagenet"),
    "tfds": (["--workdir", "{w}", "--config.data.source=tfds:mnist"], "ImageFolder"),
    "batch_neg": (["--workdir", "{w}", "--config.train.batch_size=-8"], "train.batch_size=-8"),
    "eval_batch": (["--workdir", "{w}", "--config.train.eval_batch_size=0"], "eval_batch_size"),
    "unknown_key": (["--workdir", "{w}", "--config.train.batch_sise=3"], "batch_sise"),
    "target": (["--workdir", "{w}", "--config.ascend.device_target=TPU"], "device_target"),
    "old_flag": (["--workdir", "{w}", "--data", "digits"], "--config.data.source"),
    "config_missing": (["--workdir", "{w}", "--config", "configs/nope.py"], "configs/nope.py"),
    "workdir_file": (["--workdir", "{d}/a_file"], "is a file"),
    "other_model": (["--workdir", "{d}/other_model"], "hardnet68"),
    "config_changed": (
        ["--workdir", "{d}/resumable", "--config.schedule.lr_max=0.5"],
        "schedule.lr_max",
    ),
    "no_checkpoint": (["--workdir", "{w}", "--mode=eval"], "no checkpoint"),
    "empty_ckpt": (
        ["--workdir", "{w}", "--mode=eval", "--config.init_from={d}/empty.ckpt"],
        "empty",
    ),
    "truncated_ckpt": (
        ["--workdir", "{w}", "--mode=eval", "--config.init_from={d}/truncated.ckpt"],
        "truncated",
    ),
    "foreign_ckpt": (
        ["--workdir", "{w}", "--mode=export", "--config.init_from={d}/foreign.ckpt"],
        "head.dense.weight",
    ),
    "garbage_safetensors": (
        ["--workdir", "{w}", "--mode=eval", "--config.init_from={d}/garbage.safetensors"],
        "not a safetensors file",
    ),
    "pth": (["--workdir", "{w}", "--config.init_from={d}/model.pth"], "torch_import"),
    "train_empty_ckpt": (["--workdir", "{w}", "--config.init_from={d}/empty.ckpt"], "empty"),
}
BAD_CONVERTS = {
    "convert_empty": (["{d}/empty.ckpt", "{w}/out.safetensors"], "empty"),
    "convert_truncated": (["{d}/truncated.ckpt", "{w}/out.safetensors"], "truncated"),
    "convert_foreign": (
        ["{d}/foreign.ckpt", "{w}/out.safetensors", "--model", "hardnet39ds"],
        "head.dense.weight",
    ),
    "convert_other_variant": (
        ["{d}/unnamed_hardnet39ds.safetensors", "{w}/o.ckpt", "--model", "hardnet68"],
        "fit hardnet39ds",
    ),
    "convert_kinds": (["{d}/model.pth", "{w}/out.txt"], "convert .safetensors"),
    "convert_model": (["{d}/foreign.ckpt", "{w}/o.safetensors", "--model", "x"], "unknown model"),
}


def _tree(path) -> dict:
    if not os.path.exists(path):
        return {}
    if os.path.isfile(path):
        return {".": open(path, "rb").read()}
    return {
        os.path.relpath(os.path.join(root, f), path): open(os.path.join(root, f), "rb").read()
        for root, _, files in os.walk(path)
        for f in files
    }


def run_cli_batch(
    python: str, runs: dict, preload: list[str], directory, env: dict | None = None
) -> dict:
    """Command-line runs {name: {"module" or "path", "argv"}}, in this order, each in a forked
    child of ONE interpreter that imported `preload` first (tests/ascend_side/cli_batch.py):
    exit status, stdout and stderr per run, as a fresh `python -m ...` gives them, without
    paying the interpreter start and the framework import per run."""
    spec, out = directory / "cli_runs.json", directory / "cli_results.json"
    spec.write_text(json.dumps({"preload": preload, "runs": runs}))
    env = ascend_env(env)
    proc = subprocess.run(
        [python, os.path.join(REPO, "tests", "ascend_side", "cli_batch.py"), str(spec), str(out)],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(out.read_text())


def run_ascend_clis(runs: list[list[str]], directory, env: dict | None = None) -> list[dict]:
    """Several `python -m MODULE ARGS` of the MindSpore side (each run: ["-m", MODULE, *ARGS]),
    in order, in one interpreter (run_cli_batch); fails the test unless every one exits 0."""
    directory.mkdir(exist_ok=True)
    named = {str(i): {"module": args[1], "argv": args[2:]} for i, args in enumerate(runs)}
    results = run_cli_batch(ascend_python(), named, ASCEND_PRELOAD, directory, env)
    for i, args in enumerate(runs):
        r = results[str(i)]
        if r["returncode"]:
            pytest.fail(f"{' '.join(args)} failed ({r['returncode']}):\n{r['stderr'][-6000:]}")
    return [results[str(i)] for i in range(len(runs))]


def run_cli(argv: list[str]) -> dict:
    """One true subprocess, {"returncode", "stdout", "stderr"} as run_cli_batch reports them."""
    proc = subprocess.run(
        argv, cwd=REPO, env=ascend_env(), capture_output=True, text=True, timeout=300
    )
    return {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


# What the MindSpore CLIs import on their way to an error, imported once before the forks.
ASCEND_PRELOAD = [
    "mindspore",
    "ascend_port.cli",
    "ascend_port.checks",
    "ascend_port.runtime",
    "ascend_port.train",
    "ascend_port.eval",
    "ascend_port.export",
    "ascend_port.weights",
]
JAX_PRELOAD = ["jax", "train_lib.runtime", "train_lib.train", "train_lib.errors"]
# One case per entry point runs in a fresh interpreter (the true process boundary: interpreter
# start, imports, exit status); the others run in forked children of one (run_cli_batch).
TRUE_SUBPROCESS = ("truncated_ckpt", "convert_foreign")


def _mistake(case: str, d, fresh) -> tuple[str, list[str], str]:
    """(module, arguments, workdir) of a BAD_INPUTS / BAD_CONVERTS case; `fresh` is created
    for a convert case (its output folder), never for an ascend_port one."""
    module, (args, _) = (
        ("ascend_port", BAD_INPUTS[case])
        if case in BAD_INPUTS
        else ("ascend_port.convert", BAD_CONVERTS[case])
    )
    args = [a.format(d=d, w=fresh) for a in args]
    if module == "ascend_port":
        args = [*_BASE, *args]
        return module, args, args[args.index("--workdir") + 1]
    fresh.mkdir(parents=True)
    return module, args, str(fresh)


@pytest.fixture(scope="module")
def mistake_runs(bad_files, tmp_path_factory) -> dict:
    """Every BAD_INPUTS / BAD_CONVERTS case but TRUE_SUBPROCESS's, each in a forked child of one
    MindSpore interpreter: {case: (result, workdir, its tree before, after, the fresh dir)}."""
    root = tmp_path_factory.mktemp("mistakes")
    runs, cases = {}, {}
    for case in sorted(BAD_INPUTS) + sorted(BAD_CONVERTS):
        if case in TRUE_SUBPROCESS:
            continue
        (root / case).mkdir()
        module, args, workdir = _mistake(case, bad_files, root / case / "w")
        runs[case] = {"module": module, "argv": args}
        cases[case] = (workdir, _tree(workdir), root / case / "w")
    results = run_cli_batch(ascend_python(), runs, ASCEND_PRELOAD, root)
    return {c: (results[c], w, before, _tree(w), fresh) for c, (w, before, fresh) in cases.items()}


def _assert_one_error_line(result: dict, *needles: str) -> None:
    errors = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
    assert result["returncode"] == 2, result["stderr"][-3000:]
    assert "Traceback" not in result["stderr"], result["stderr"][-3000:]
    assert len(errors) == 1, result["stderr"][-3000:]
    assert all(needle in errors[0] for needle in needles), errors[0]


@BAD_FILES_GROUP
@pytest.mark.slow
@pytest.mark.parametrize("case", sorted(BAD_INPUTS) + sorted(BAD_CONVERTS))
def test_user_mistake_is_one_error_line_exit_2_workdir_untouched(
    bad_files, mistake_runs, tmp_path, case
):
    if case in TRUE_SUBPROCESS:
        fresh = tmp_path / "w"
        module, args, workdir = _mistake(case, bad_files, fresh)
        before = _tree(workdir)
        result = run_cli([ascend_python(), "-m", module, *args])
        after = _tree(workdir)
    else:
        result, workdir, before, after, fresh = mistake_runs[case]
    named = (BAD_INPUTS.get(case) or BAD_CONVERTS[case])[1]
    _assert_one_error_line(result, named)
    assert after == before
    if case in BAD_INPUTS and workdir == str(fresh):
        assert not fresh.exists()  # nothing created either


# Config mistakes both CLIs must refuse with the same line (train_lib.config_checks on both
# sides), and what that line names.
SHARED_MISTAKES = {
    "--config.train.batch_size=0": ("train.batch_size=0",),
    "--config.model.drop_path_rate=0.1": ("drop_path_rate", "hardnet39ds", "drop_rate"),
    "--config.model.name=hlg_tiny": ("224",),
    "--config.model.name=resnet50": ("resnet50",),
    "--config.data.crop_pct=2.0": ("crop_pct",),
    "--config.optim.name=adam": ("adam",),
    "--config.schedule.name=poly": ("poly",),
    "--config.train.label_smoothing=1.0": ("label_smoothing",),
    "--config.optim.weight_decay=-0.1": ("weight_decay",),
    "--config.train.grad_clip_norm=-1.0": ("grad_clip_norm",),
}


# Runs as a fresh interpreter on both sides; the others in forked children (run_cli_batch).
SHARED_TRUE_SUBPROCESS = "--config.train.batch_size=0"
_SIDES = {"jax": ["main.py"], "mindspore": ["-m", "ascend_port"]}


def _shared_args(side: str, workdir, override: str) -> list[str]:
    return ["--config", "configs/demo.py", "--workdir", str(workdir / side), override]


@pytest.fixture(scope="module")
def shared_mistake_runs(tmp_path_factory) -> tuple:
    """SHARED_MISTAKES but SHARED_TRUE_SUBPROCESS on both sides, one interpreter per side:
    ({side: {override: result}}, {override: its workdir root})."""
    root = tmp_path_factory.mktemp("shared_mistakes")
    overrides = [o for o in sorted(SHARED_MISTAKES) if o != SHARED_TRUE_SUBPROCESS]
    workdirs = {o: root / f"case{i}" for i, o in enumerate(overrides)}
    for workdir in workdirs.values():
        workdir.mkdir()
    results = {}
    for side, python, preload, entry in (
        ("jax", sys.executable, JAX_PRELOAD, {"path": "main.py"}),
        ("mindspore", ascend_python(), ASCEND_PRELOAD, {"module": "ascend_port"}),
    ):
        runs = {o: {**entry, "argv": _shared_args(side, workdirs[o], o)} for o in overrides}
        (root / side).mkdir()
        results[side] = run_cli_batch(python, runs, preload, root / side)
    return results, workdirs


@pytest.mark.xdist_group("ascend_shared_mistakes")
@pytest.mark.parametrize("override", sorted(SHARED_MISTAKES))
def test_both_sides_refuse_the_same_config_with_the_same_line(
    shared_mistake_runs, tmp_path, override
):
    """Exit 2, one `error:` line naming the mistake, no traceback, no workdir; the same line."""
    lines = {}
    for side in ("jax", "mindspore"):
        if override == SHARED_TRUE_SUBPROCESS:
            python = sys.executable if side == "jax" else ascend_python()
            workdir = tmp_path
            result = run_cli([python, *_SIDES[side], *_shared_args(side, workdir, override)])
        else:
            result = shared_mistake_runs[0][side][override]
            workdir = shared_mistake_runs[1][override]
        _assert_one_error_line(result, *SHARED_MISTAKES[override])
        errors = [line for line in result["stderr"].splitlines() if line.startswith("error: ")]
        lines[side] = errors[0].replace(str(workdir / side), "W")
        assert not (workdir / side).exists()
    assert lines["jax"] == lines["mindspore"], lines

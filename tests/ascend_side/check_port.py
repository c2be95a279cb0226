"""The MindSpore half of tests/test_ascend_port.py, run by HHL_ASCEND_PYTHON in one process.

    python -m tests.ascend_side.check_port DIR

DIR holds what the JAX side wrote: manifest.json, inputs.npz (NHWC batches), <name>.safetensors
(random canonical weights) and, for the models in manifest["parity"], <name>.logits.npz (Flax eval
logits on the inputs listed there). Writes DIR/results.json and, for the models in
manifest["file_round_trip"], DIR/<name>.rt.safetensors (canonical -> .ckpt -> canonical) for the
JAX side to compare; the others (width/depth-only variants, whose files go through the same
conversion code) round-trip in memory: canonical file -> cell -> canonical names and layouts.
Each check records its own error so one failure does not hide the others.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback

import mindspore as ms
import numpy as np

import ascend_port
from ascend_port import ckpt_file, compat, convert, optim, zoo
from ascend_port import export as ms_export
from ascend_port import weights as msw
from models import canonical
from models.weights_check import WeightsMismatchError
from tests.ascend_side import results as check_results
from tests.ascend_side import zoo_names

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
# {(model, input key): the parity cell's logits}: the MindIR check compares the exported graph
# with these rather than building and running the same cell (same weights, same input) again.
CELL_LOGITS: dict[tuple[str, str], np.ndarray] = {}


def _record(results: dict, key: str, fn) -> None:
    start = time.perf_counter()
    try:
        results[key] = fn()
    except Exception as e:  # recorded for the JAX-side assertion, which prints it
        results[key] = {"error": f"{type(e).__name__}: {e}", "traceback": traceback.format_exc()}
    results.setdefault("seconds", {})[key] = round(time.perf_counter() - start, 2)


def parity(
    d: str,
    name: str,
    inputs,
    keys: list[str],
    num_classes: int,
    forward_interface: bool,
    memory_round_trip: bool = False,
) -> dict:
    """Logits against Flax on `keys`, the interface and, with `memory_round_trip`, the loaded
    cell's weights read back (under "roundtrip"): one cell build for both."""
    cell = ascend_port.create(name, num_classes=num_classes)
    path = os.path.join(d, f"{name}.safetensors")
    ascend_port.load_weights(cell, path)
    flax_logits = np.load(os.path.join(d, f"{name}.logits.npz")) if keys else {}
    out, x, logits = {}, None, None
    if memory_round_trip:  # before reset_classifier changes the head
        out["roundtrip"] = round_trip_in_memory(cell, path)
    for key in keys:
        x = ms.Tensor(np.ascontiguousarray(inputs[key].transpose(0, 3, 1, 2)))
        logits = cell(x).asnumpy()
        CELL_LOGITS[name, key] = logits
        ref = flax_logits[key]
        out[key] = {
            "max_abs_diff": float(np.abs(logits - ref).max()),
            "max_abs_logit": float(np.abs(ref).max()),
            "argmax_equal": bool((logits.argmax(1) == ref.argmax(1)).all()),
        }
    out["interface"] = interface(cell, x if forward_interface else None, logits, num_classes)
    return out


def interface(cell, x, logits: np.ndarray, num_classes: int) -> dict:
    """timm's interface on the cell: head(features) == cell(x); reset_classifier swaps only the
    head, under the names a fresh build has. With x None (a variant whose cell class another
    model's forward check runs) only what needs no forward pass."""
    out = {}
    if x is not None:
        features = cell.forward_features(x)
        via_head = cell.forward_head(features).asnumpy()
        out["features_shape"] = list(features.shape)
        out["head_equals_call"] = bool(np.array_equal(via_head, logits))
    before = {p.name: (tuple(p.shape), p.asnumpy()) for p in cell.get_parameters()}
    cell.reset_classifier(num_classes + 3)
    after = {p.name: (tuple(p.shape), p.asnumpy()) for p in cell.get_parameters()}
    changed = sorted(k for k in after if before.get(k, (None,))[0] != after[k][0])
    kept_equal = all(np.array_equal(after[k][1], before[k][1]) for k in after if k not in changed)
    if x is not None:
        out["reset_logits_shape"] = list(cell.forward_head(features).shape)
    return {
        **out,
        "num_classes": [num_classes, cell.num_classes],
        "num_features": cell.num_features,
        "same_names_after_reset": sorted(after) == sorted(before),
        "reset_changed": changed,
        "reset_kept_backbone": kept_equal,
    }


def round_trip(d: str, name: str) -> dict:
    src = os.path.join(d, f"{name}.safetensors")
    ckpt, back = os.path.join(d, f"{name}.ckpt"), os.path.join(d, f"{name}.rt.safetensors")
    convert.main([src, ckpt])  # strict; reloads the .ckpt with load_param_into_net(strict_load)
    convert.main([ckpt, back])
    a, _ = canonical.read(src)
    b, meta = canonical.read(back)
    result = {
        "same_keys": sorted(a) == sorted(b),
        "bit_exact": all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a),
        "ckpt_entries": len(ckpt_file.load_checkpoint(ckpt)),
        "metadata": meta,
    }
    os.remove(ckpt)  # up to 0.5 GB (HRNet-W64); the JAX side reads only the .rt file
    return result


def round_trip_in_memory(cell, path: str) -> dict:
    """canonical file -> cell (strict load) -> canonical names and layouts, without the .ckpt
    files: what a width/depth-only variant adds to its representative's file round trip is its
    own names and shapes (returned for the JAX side to compare with the Flax tree)."""
    a, meta = canonical.read(path)
    b = msw.canonical_flat(cell)
    return {
        "same_keys": sorted(a) == sorted(b),
        "bit_exact": all(a[k].dtype == b[k].dtype and np.array_equal(a[k], b[k]) for k in a),
        "shapes": {k: list(v.shape) for k, v in b.items()},
        "metadata": meta,
    }


def mismatch(d: str, name: str, num_classes: int) -> dict:
    """Errors for a missing, an unexpected and a mis-shaped key, canonical and .ckpt."""
    flat, _ = canonical.read(os.path.join(d, f"{name}.safetensors"))
    kernel = sorted(k for k in flat if k.endswith(".kernel"))[0]
    bias = sorted(k for k in flat if k.endswith(".bias"))[-1]
    del flat[kernel]
    flat[bias] = flat[bias][:-1]
    flat["base.99.extra.kernel"] = np.zeros((1, 1, 1, 1), np.float32)
    bad = os.path.join(d, "bad.safetensors")
    canonical.write(flat, bad, model=name, num_classes=num_classes)
    out = {"removed": kernel, "reshaped": bias, "added": "base.99.extra.kernel"}
    cell = ascend_port.create(name, num_classes=num_classes)
    try:
        ascend_port.load_weights(cell, bad)
        out["canonical_error"] = None
    except WeightsMismatchError as e:
        out["canonical_error"] = str(e)
    ms_flat = msw.cell_flat(cell)
    ms_key = next(iter(ms_flat))
    del ms_flat[ms_key]
    bad_ckpt = os.path.join(d, "bad.ckpt")
    msw.write_ckpt(ms_flat, bad_ckpt)
    out["ckpt_removed"] = ms_key
    try:
        ascend_port.load_weights(cell, bad_ckpt)
        out["ckpt_error"] = None
    except WeightsMismatchError as e:
        out["ckpt_error"] = str(e)
    return out


def zoo_import(d: str, fmt_name: str) -> dict:
    """A zoo-named training checkpoint (names rebuilt from the spec) converts strictly."""
    fmt = zoo.get(fmt_name)
    shapes = zoo_names.zoo_params(fmt.model)
    rng = np.random.default_rng(0)
    values = {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}
    # Optimizer slots as (1,) stand-ins: only their names matter to the converter, and full-size
    # RMSProp slots of HRNet-W48 would add 600 MB to write and parse.
    training = {
        k: np.zeros((1,), np.float32) for k in zoo_names.training_entries(fmt.model, shapes)
    }
    src, dst = (
        os.path.join(d, f"zoo_{fmt_name}.ckpt"),
        os.path.join(d, f"zoo_{fmt_name}.safetensors"),
    )
    msw.write_ckpt({**values, **training}, src)  # no hhl_* metadata, as the zoo writes it
    convert.main([src, dst, "--from-zoo", fmt_name])
    flat, meta = canonical.read(dst)
    cell = ascend_port.create(fmt.model)
    ascend_port.load_weights(cell, dst)
    ours = msw.cell_flat(cell)
    names = zoo.rename(fmt_name, values)
    os.remove(src)
    return {
        "zoo_entries": len(shapes),
        "spec_entries": zoo_names.SPEC_ENTRY_COUNTS[fmt.model],
        "training_entries": len(training),
        "canonical_keys": len(flat),
        "num_classes": int(meta["num_classes"]),
        "values_in_place": all(np.array_equal(values[z], ours[o]) for z, o in names.items()),
        "metadata": meta,
    }


def _base_config():
    spec = importlib.util.spec_from_file_location(
        "base_config", os.path.join(REPO, "configs", "base.py")
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.get_config()


def eval_preprocessing(d: str, spec: dict) -> dict:
    """Runs ascend_port.data.eval_dataset over spec['root'] for each interpolation and saves
    the images back on the 0..255 scale (HWC, file order) for the JAX side to compare with
    input_pipeline.preprocess.eval_image."""
    from ascend_port import data

    out = {}
    for interpolation in spec["interpolations"]:
        config = _base_config()
        config.model.name = "hardnet39ds"
        config.data.image_size = spec["image_size"]
        config.data.crop_pct = spec["crop_pct"]
        config.data.interpolation = interpolation
        p = data.preprocess(config)
        ds, count = data.eval_dataset(config, spec["root"], batch_size=count_all(spec["root"]))
        images = next(ds.create_tuple_iterator(num_epochs=1))[0].asnumpy()
        images = images.transpose(0, 2, 3, 1) * np.asarray(p.std) + np.asarray(p.mean)
        out[interpolation] = images.astype(np.float32)
    np.savez(os.path.join(d, "preprocess_result.npz"), **out)
    return {"images": count}


def count_all(root: str) -> int:
    return sum(len(files) for _, _, files in os.walk(os.path.join(root, "val")))


def optimizer_steps(d: str) -> dict:
    """Applies each optimizer to the JAX side's fixed gradients; parameters after every step."""
    case = np.load(os.path.join(d, "optim_case.npz"))
    names = ["fc.weight", "norm.gamma"]  # decayed / exempt with decay_norm_and_bias=False
    out = {}
    for opt_name in ("sgd", "rmsprop", "adamw"):
        config = _base_config()
        config.optim.name, config.optim.weight_decay = opt_name, float(case["weight_decay"])
        config.optim.decay_norm_and_bias = False
        params = [ms.Parameter(ms.Tensor(case[f"w0/{n}"]), name=n) for n in names]
        opt = optim.build(config, params, case["lrs"])
        for step in range(len(case["lrs"])):
            opt(tuple(ms.Tensor(case[f"g{step}/{n}"]) for n in names))
            for n, p in zip(names, params, strict=True):
                out[f"{opt_name}/{step}/{n}"] = p.asnumpy().copy()
    np.savez(os.path.join(d, "optim_result.npz"), **out)
    return {"steps": len(case["lrs"])}


def low_memfree(d: str) -> dict:
    """A .ckpt loads when MemFree is below its size but MemAvailable is not (page cache full)."""
    path = os.path.join(d, "memfree.ckpt")
    expected = {"w": np.arange(1 << 16, dtype=np.float32)}  # 256 KB, far above one free page
    msw.write_ckpt(expected, path)
    sysconf = os.sysconf

    def one_free_page(name):
        return 1 if name == "SC_AVPHYS_PAGES" else sysconf(name)

    os.sysconf = one_free_page  # what sysconf reports once the cache has taken the rest
    try:
        try:
            ms.load_checkpoint(path)
            plain_error = None
        except ValueError as e:
            plain_error = str(e)
        ours = ckpt_file.load_checkpoint(path)
    finally:
        os.sysconf = sysconf
    return {
        "plain_error": plain_error,
        "loaded_equal": bool(np.array_equal(ours["w"].asnumpy(), expected["w"])),
        "mem_available": compat.available_memory(),
    }


def onnx_export(d: str, name: str, num_classes: int, inputs, key: str) -> dict:
    """Exports a fresh cell at the tested batch (reshapes freeze it) and runs onnxruntime."""
    import onnxruntime as ort

    config = _base_config()
    config.model.name, config.model.num_classes = name, num_classes
    x = inputs[key]
    config.data.image_size = x.shape[1]
    path = ms_export.export_file(
        config,
        os.path.join(d, f"{name}.safetensors"),
        "ONNX",
        os.path.join(d, f"{name}.onnx"),
        batch_size=x.shape[0],
    )
    session = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: np.ascontiguousarray(x.transpose(0, 3, 1, 2))}
    logits = session.run(None, feed)[0]
    ref = np.load(os.path.join(d, f"{name}.logits.npz"))[key]
    return {
        "max_abs_diff": float(np.abs(logits - ref).max()),
        "argmax_equal": bool((logits.argmax(1) == ref.argmax(1)).all()),
    }


def mindir_export(d: str, name: str, num_classes: int, inputs, key: str) -> dict:
    """Exports MindIR, loads it with mindspore.load + nn.GraphCell, compares with the cell
    (its logits from the parity check when that ran on this input)."""
    config = _base_config()
    config.model.name, config.model.num_classes = name, num_classes
    x = inputs[key]
    config.data.image_size = x.shape[1]
    weights = os.path.join(d, f"{name}.safetensors")
    path = ms_export.export_file(
        config, weights, "MINDIR", os.path.join(d, f"{name}.mindir"), batch_size=x.shape[0]
    )
    graph = ms.nn.GraphCell(ms.load(path))
    images = ms.Tensor(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))
    loaded = graph(images).asnumpy()
    ref = CELL_LOGITS.get((name, key))
    if ref is None:
        cell = ascend_port.create(name, num_classes=num_classes)
        ascend_port.load_weights(cell, weights)
        ref = cell(images).asnumpy()
    return {
        "path": path,
        "shape": list(loaded.shape),
        "max_abs_diff": float(np.abs(loaded - ref).max()),
        "argmax_equal": bool((loaded.argmax(1) == ref.argmax(1)).all()),
    }


def main(d: str) -> None:
    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    inputs = np.load(os.path.join(d, "inputs.npz"))
    n = manifest["num_classes"]
    results: dict = {"supported": ascend_port.names()}
    forward_interface = manifest.get("forward_interface", manifest["names"])
    file_round_trip = manifest.get("file_round_trip", manifest["names"])
    for name in manifest["names"]:
        keys = manifest["parity"].get(name)
        in_memory = keys is not None and name not in file_round_trip  # the parity cell reads back
        if keys is not None:
            _record(
                results,
                f"parity/{name}",
                lambda n_=name, k=keys, m=in_memory: parity(
                    d, n_, inputs, k, n, n_ in forward_interface, m
                ),
            )
        if not in_memory:
            _record(results, f"roundtrip/{name}", lambda name=name: round_trip(d, name))
        elif "error" in results[f"parity/{name}"]:
            results[f"roundtrip/{name}"] = results[f"parity/{name}"]
        else:
            results[f"roundtrip/{name}"] = results[f"parity/{name}"].pop("roundtrip")
    name = manifest["mismatch"]
    _record(results, "mismatch", lambda: mismatch(d, name, n))
    for fmt in manifest["zoo"]:
        _record(results, f"zoo/{fmt}", lambda fmt=fmt: zoo_import(d, fmt))
    for name in manifest["onnx"]:
        key = manifest["parity"][name][0]
        _record(results, f"onnx/{name}", lambda n_=name, k=key: onnx_export(d, n_, n, inputs, k))
    for name in manifest.get("mindir", []):
        key = manifest["parity"][name][0]
        _record(
            results, f"mindir/{name}", lambda n_=name, k=key: mindir_export(d, n_, n, inputs, k)
        )
    _record(results, "optimizers", lambda: optimizer_steps(d))
    _record(results, "low_memfree", lambda: low_memfree(d))
    if manifest.get("preprocess"):
        _record(results, "preprocess", lambda: eval_preprocessing(d, manifest["preprocess"]))
    results["compat_missing"] = compat.missing()
    check_results.write(d, results)


if __name__ == "__main__":
    main(sys.argv[1])

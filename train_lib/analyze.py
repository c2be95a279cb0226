"""--mode=analyze: parameters, MACs and CIO per layer, and the compiled programs' memory.

MACs and CIO come from the traced forward (a jaxpr), so they count exactly what runs: every
conv_general_dilated and dot_general, including the ones inside nested jits and custom
derivatives. A layer is named by the parameter its kernel comes from; matmuls between two
activations (attention) are named by their position. CIO is the HarDNet paper's measure of
memory traffic: the sum over convolutions of the input plus the output activation size, here in
bytes at the compute dtype, per image.
"""

from __future__ import annotations

import json
import math
import os
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx
from ml_collections import ConfigDict

import models
from models import registry
from train_lib import benchmark, build, optim
from train_lib import mesh as mesh_lib
from train_lib.state import SplitModel

# Ops through which a kernel keeps its name (dtype casts and layout changes of the parameter).
_NAME_PRESERVING = frozenset(
    {
        "convert_element_type",
        "reshape",
        "transpose",
        "copy",
        "broadcast_in_dim",
        "squeeze",
        "expand_dims",
        "rev",
    }
)


def _is_var(v) -> bool:
    return not hasattr(v, "val")  # jaxpr Literals carry .val; Vars do not


def _sub_jaxprs(eqn) -> list:
    """(jaxpr, operands aligned with its invars or None, repeat count) for nested programs."""
    out = []
    for key, value in eqn.params.items():
        for item in value if isinstance(value, (list, tuple)) else [value]:
            jaxpr = getattr(item, "jaxpr", item)  # ClosedJaxpr -> Jaxpr
            if not hasattr(jaxpr, "eqns"):
                continue
            aligned = eqn.invars if len(jaxpr.invars) == len(eqn.invars) else None
            repeat = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
            out.append((jaxpr, aligned if key != "cond_jaxpr" else None, repeat))
    return out


def _conv_row(eqn, name: str | None) -> dict[str, Any]:
    lhs, rhs, out = (v.aval for v in (*eqn.invars[:2], eqn.outvars[0]))
    dn = eqn.params["dimension_numbers"]
    out_features = rhs.shape[dn.rhs_spec[0]]
    kernel = [rhs.shape[i] for i in dn.rhs_spec[2:]]
    groups = eqn.params["feature_group_count"]
    strides = eqn.params["window_strides"]
    op = f"conv{'x'.join(map(str, kernel))}"
    if groups > 1:
        op = ("dw" if groups == lhs.shape[dn.lhs_spec[1]] else f"g{groups}") + op
    if max(strides) > 1:
        op += f"/s{max(strides)}"
    itemsize = jnp.dtype(lhs.dtype).itemsize
    return {
        "name": name,
        "op": op,
        "input": list(lhs.shape),
        "output": list(out.shape),
        "macs": math.prod(out.shape) * math.prod(rhs.shape) // out_features,
        "cio_bytes": (math.prod(lhs.shape) + math.prod(out.shape)) * itemsize,
    }


def _dot_row(eqn, name: str | None) -> dict[str, Any]:
    lhs, rhs, out = (v.aval for v in (*eqn.invars[:2], eqn.outvars[0]))
    (contract_lhs, _), _ = eqn.params["dimension_numbers"]
    return {
        "name": name,
        "op": "dense" if name else "matmul",
        "input": list(lhs.shape),
        "output": list(out.shape),
        "macs": math.prod(out.shape) * math.prod(lhs.shape[i] for i in contract_lhs),
        "cio_bytes": 0,  # CIO counts convolutions only
    }


def _walk(jaxpr, names: dict, rows: list[dict[str, Any]], repeat: int = 1) -> None:
    for eqn in jaxpr.eqns:
        prim = eqn.primitive.name
        if prim in ("conv_general_dilated", "dot_general"):
            kernel = eqn.invars[1]
            name = names.get(kernel) if _is_var(kernel) else None
            row = (_conv_row if prim == "conv_general_dilated" else _dot_row)(eqn, name)
            rows.extend([row] * repeat)
        elif prim in _NAME_PRESERVING and _is_var(eqn.invars[0]) and eqn.invars[0] in names:
            names[eqn.outvars[0]] = names[eqn.invars[0]]
        for sub, operands, count in _sub_jaxprs(eqn):
            inner = {}
            if operands is not None:
                inner = {
                    iv: names[ov]
                    for iv, ov in zip(sub.invars, operands, strict=True)
                    if _is_var(ov) and ov in names
                }
            _walk(sub, inner, rows, repeat * count)


def _layer_name(param: str) -> str:
    return param.rsplit(".", 1)[0] if param.endswith(".kernel") else param


def layer_table(
    split: SplitModel, image_size: int, dtype, channels: int = 3
) -> list[dict[str, Any]]:
    """One row per conv / matmul of the eval-mode forward of one image, in execution order."""
    params = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in split.initial_params.items()}
    stats = {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in split.initial_stats.items()}
    image = jax.ShapeDtypeStruct((1, image_size, image_size, channels), dtype)

    def forward(params, stats, image):
        return split.apply(params, stats, image, train=False)[0]

    closed = jax.make_jaxpr(forward)(params, stats, image)
    param_names = jax.tree_util.tree_leaves(
        jax.tree_util.tree_map_with_path(lambda path, _: path[0].key, params)
    )
    names = {
        v: _layer_name(n)
        for v, n in zip(closed.jaxpr.invars[: len(param_names)], param_names, strict=True)
    }
    rows: list[dict[str, Any]] = []
    _walk(closed.jaxpr, names, rows)
    return rows


def compiled_memory(config: ConfigDict, split: SplitModel, batch: int) -> dict[str, Any]:
    """XLA's memory plan for the eval forward and the train step at `batch` images (abstract
    inputs: nothing is allocated or run)."""
    size = config.data.image_size
    sds = lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype)  # noqa: E731
    params = jax.tree.map(sds, split.initial_params)
    stats = jax.tree.map(sds, split.initial_stats)
    images = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.uint8)
    labels = jax.ShapeDtypeStruct((batch,), jnp.int32)
    eval_batch = {"image": images, "label": labels, "mask": jax.ShapeDtypeStruct((batch,), bool)}
    forward = build.eval_step(config, split).lower(params, stats, eval_batch).compile()
    tx = optim.create_optimizer(config, optax.constant_schedule(0.0))
    state = jax.eval_shape(lambda p, s: build.initial_state(config, tx, p, s), params, stats)
    train = build.train_step(config, split, tx, mesh_lib.make_mesh())
    train = train.lower(state, {"image": images, "label": labels}).compile()
    fwd, trn = benchmark.compiled_memory(forward), benchmark.compiled_memory(train)
    return {
        "memory_batch": batch,
        "forward_temp_bytes": fwd["temp_bytes"],
        "train_temp_bytes": trn["temp_bytes"],
        "train_argument_bytes": trn["argument_bytes"],
    }


def analyze(config: ConfigDict, *, memory: bool = True) -> dict[str, Any]:
    """Params, MACs/image, CIO bytes/image, per-layer rows and (optionally) compiled memory."""
    name = config.model.name
    dtype = build.DTYPES[config.model.dtype]
    variant = models.info(name)
    abstract = nnx.eval_shape(
        lambda: variant.builder(
            num_classes=config.model.num_classes,
            dtype=dtype,
            rngs=nnx.Rngs(0),
            **build.model_kwargs(config),
        )
    )
    split = SplitModel(abstract)
    rows = layer_table(split, config.data.image_size, dtype)
    result = {
        "model": name,
        "image_size": config.data.image_size,
        "dtype": config.model.dtype,
        "params": registry.count_params(abstract),
        "macs": sum(r["macs"] for r in rows),
        "conv_macs": sum(r["macs"] for r in rows if r["op"].startswith(("conv", "dw", "g"))),
        "cio_bytes": sum(r["cio_bytes"] for r in rows),
        "num_convs": sum(1 for r in rows if r["cio_bytes"]),
    }
    if memory and config.benchmark.analyze_batch > 0:
        result.update(compiled_memory(config, split, config.benchmark.analyze_batch))
    result["layers"] = rows
    return result


def _summary_table(results: list[dict[str, Any]]) -> str:
    columns = (
        "model",
        "image_size",
        "dtype",
        "params",
        "macs",
        "cio_bytes",
        "num_convs",
        "forward_temp_bytes",
        "train_temp_bytes",
    )
    return benchmark.table(results, columns)


def _layers_table(result: dict[str, Any]) -> str:
    rows = [
        {**r, "input": "x".join(map(str, r["input"])), "output": "x".join(map(str, r["output"]))}
        for r in result["layers"]
    ]
    return benchmark.table(rows, ("name", "op", "input", "output", "macs", "cio_bytes"))


def run(
    config: ConfigDict, workdir: str | None = None, *, all_variants: bool = False
) -> dict[str, Any]:
    """Analyzes the config's model (or every registered variant at its default input size,
    with the config's dtype); prints one JSON line per model and readable tables. With a
    workdir the JSON lines also go to <workdir>/analyze.jsonl."""
    build.validate(config)
    configs = [config]
    if all_variants:
        configs = []
        for name in models.names():
            c = ConfigDict(config.to_dict())
            c.model.name = name
            c.data.image_size = models.info(name).input_size
            configs.append(c)
    results = []
    for c in configs:
        result = analyze(c)
        results.append(result)
        if jax.process_index() == 0:
            print(json.dumps(result), flush=True)
            if not all_variants:
                print(_layers_table(result), flush=True)
    if jax.process_index() == 0:
        print(_summary_table(results), flush=True)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "analyze.jsonl"), "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in results)
    last = results[-1]
    return {k: last[k] for k in ("model", "params", "macs", "cio_bytes")}

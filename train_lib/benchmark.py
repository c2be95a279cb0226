"""--mode=benchmark: the real train and eval steps on synthetic uint8 batches already on device.

Compile time, step time, images per second (global and per device), FLOPs per image from the
compiled program's cost analysis, MFU against the device's peak for the compute dtype, and peak
device memory. No input pipeline, so no TensorFlow import: the numbers are of the step alone.
"""

from __future__ import annotations

import dataclasses
import json
import os
import time
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from ml_collections import ConfigDict

from train_lib import build, optim
from train_lib import mesh as mesh_lib
from train_lib.errors import UserError
from train_lib.state import SplitModel

# Dense (no sparsity) tensor-core peak TFLOP/s per device, from NVIDIA's data sheets. float32
# is the TF32 figure: XLA's default matmul/conv precision on Ampere and later uses TF32.
# Matched against jax's device_kind by substring, first match wins (so specific names first).
PEAK_TFLOPS: tuple[tuple[str, dict[str, float]], ...] = (
    ("GB200", {"bfloat16": 2500.0, "float32": 1250.0}),
    ("B200", {"bfloat16": 2250.0, "float32": 1100.0}),
    ("H200 NVL", {"bfloat16": 835.0, "float32": 418.0}),
    ("H200", {"bfloat16": 989.4, "float32": 494.7}),  # SXM
    ("H100 NVL", {"bfloat16": 835.0, "float32": 418.0}),
    ("H100 PCIe", {"bfloat16": 756.0, "float32": 378.0}),
    ("H100", {"bfloat16": 989.4, "float32": 494.7}),  # SXM (device_kind "NVIDIA H100 80GB HBM3")
    ("GH200", {"bfloat16": 989.4, "float32": 494.7}),
    ("A100", {"bfloat16": 312.0, "float32": 156.0}),
    ("L40S", {"bfloat16": 362.05, "float32": 183.0}),
    ("L40", {"bfloat16": 181.05, "float32": 90.5}),
    ("L4", {"bfloat16": 121.0, "float32": 60.0}),
    ("A10G", {"bfloat16": 70.0, "float32": 35.0}),
    ("A10", {"bfloat16": 125.0, "float32": 62.5}),
    ("RTX 6000 Ada", {"bfloat16": 364.2, "float32": 182.1}),
    ("RTX 4090", {"bfloat16": 165.2, "float32": 82.6}),
    ("RTX 3090", {"bfloat16": 71.0, "float32": 35.6}),
)

FIELDS = (
    "model",
    "mode",
    "batch",
    "image_size",
    "dtype",
    "devices",
    "compile_s",
    "step_ms",
    "img_per_s",
    "img_per_s_per_device",
    "flops_per_image",
    "mfu",
    "peak_mem_bytes",
)


def peak_tflops(device_kind: str, dtype: str, override: float | None = None) -> float | None:
    """Per-device peak for `dtype`; None when unknown (CPUs, unlisted GPUs) and not overridden."""
    if override:
        return float(override)
    for key, peaks in PEAK_TFLOPS:
        if key.lower() in device_kind.lower():
            return peaks.get(dtype)
    return None


def compiled_flops(compiled) -> float | None:
    """FLOPs of one call of a compiled program (per device under SPMD), from XLA's cost model."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # older jax: one dict per program
        cost = cost[0] if cost else None
    flops = (cost or {}).get("flops")
    return float(flops) if flops and flops > 0 else None


def compiled_memory(compiled) -> dict[str, int | None]:
    """XLA's static memory plan: temporaries (activations, workspace), arguments, outputs."""
    try:
        mem = compiled.memory_analysis()
    except Exception:  # noqa: BLE001 - not every backend implements it
        mem = None
    get = lambda k: int(getattr(mem, k)) if mem is not None and hasattr(mem, k) else None  # noqa: E731
    return {
        "temp_bytes": get("temp_size_in_bytes"),
        "argument_bytes": get("argument_size_in_bytes"),
        "output_bytes": get("output_size_in_bytes"),
    }


def peak_device_memory() -> int | None:
    """Peak bytes in use on device 0 since start-up (GPU/TPU); None where the backend has no
    allocator statistics (CPU)."""
    stats = jax.local_devices()[0].memory_stats() or {}
    peak = stats.get("peak_bytes_in_use")
    return int(peak) if peak is not None else None


def _synthetic_batch(
    batch: int, image_size: int, num_classes: int, sharding
) -> dict[str, jax.Array]:
    rng = np.random.default_rng(0)
    local = batch // jax.process_count()
    host = {
        "image": rng.integers(0, 256, (local, image_size, image_size, 3), dtype=np.uint8),
        "label": rng.integers(0, num_classes, (local,), dtype=np.int32),
        "mask": np.ones((local,), bool),
    }
    return mesh_lib.to_global(host, sharding)


def time_steps(run, warmup: int, iters: int) -> float:
    """Seconds per step: dispatch back to back (as the training loop does), sync at the end."""
    out = None
    for _ in range(warmup):
        out = run()
    jax.block_until_ready(out)
    start = time.perf_counter()
    for _ in range(iters):
        out = run()
    jax.block_until_ready(out)
    return (time.perf_counter() - start) / iters


def _row(
    config: ConfigDict,
    mode: str,
    batch: int,
    compile_s: float,
    step_s: float,
    flops: float | None,
    compiled,
) -> dict[str, Any]:
    devices = jax.device_count()
    kind = jax.devices()[0].device_kind
    dtype = config.model.dtype
    flops_per_image = flops * devices / batch if flops else None  # cost analysis is per device
    peak = peak_tflops(kind, dtype, config.benchmark.peak_tflops)
    mfu = None
    if peak and flops:
        mfu = round(flops / step_s / (peak * 1e12), 4)
    return {
        "model": config.model.name,
        "mode": mode,
        "batch": batch,
        "image_size": config.data.image_size,
        "dtype": dtype,
        "devices": devices,
        "device_kind": kind,
        "platform": jax.devices()[0].platform,
        "compile_s": round(compile_s, 2),
        "step_ms": round(step_s * 1e3, 2),
        "img_per_s": round(batch / step_s, 2),
        "img_per_s_per_device": round(batch / step_s / devices, 2),
        "flops_per_image": flops_per_image,
        "peak_tflops": peak,
        "mfu": mfu,
        **_memory(compiled),
    }


def _memory(compiled) -> dict[str, Any]:
    """The allocator's peak where the backend keeps one (GPU/TPU); on CPU, XLA's static plan
    for this program (temporaries + arguments + outputs), named as such in peak_mem_source."""
    plan = compiled_memory(compiled)
    peak, source = peak_device_memory(), "device"
    if peak is None and plan["temp_bytes"] is not None:
        peak, source = sum(v or 0 for v in plan.values()), "xla_plan"
    return {"peak_mem_bytes": peak, "peak_mem_source": source if peak is not None else None, **plan}


@dataclasses.dataclass
class Runner:
    """A compiled step bound to its inputs: `run()` dispatches one step and returns its output."""

    mode: str
    batch: int
    compile_s: float
    compiled: Any
    run: Callable[[], Any]


def prepare_train(config: ConfigDict, split: SplitModel) -> Runner:
    """The training loop's step (every train.* option: label smoothing and its mode, mixup,
    EMA, accumulation, parallel mode; float16 loss scaling), with a constant learning rate."""
    mesh = mesh_lib.make_mesh()
    batch_size = config.train.batch_size
    tx = optim.create_optimizer(config, optax.constant_schedule(config.schedule.lr_max))
    # Copies: the step donates its state, and the eval measurement still needs the initial arrays.
    params, stats = jax.tree.map(jnp.array, (split.initial_params, split.initial_stats))
    state = jax.device_put(
        build.initial_state(config, tx, params, stats), mesh_lib.replicated(mesh)
    )
    batch = _synthetic_batch(
        batch_size, config.data.image_size, config.model.num_classes, mesh_lib.data_sharding(mesh)
    )
    batch.pop("mask")
    step = build.train_step(config, split, tx, mesh)
    start = time.perf_counter()
    compiled = step.lower(state, batch).compile()
    compile_s = time.perf_counter() - start
    holder = [state]

    def run():
        holder[0], metrics = compiled(holder[0], batch)
        return metrics

    return Runner("train", batch_size, compile_s, compiled, run)


def prepare_eval(config: ConfigDict, split: SplitModel) -> Runner:
    """The evaluation loop's step (forward in eval mode plus the masked metric sums)."""
    mesh = mesh_lib.make_mesh()
    batch_size = config.train.eval_batch_size or config.train.batch_size
    params, stats = jax.device_put(
        (split.initial_params, split.initial_stats), mesh_lib.replicated(mesh)
    )
    batch = _synthetic_batch(
        batch_size, config.data.image_size, config.model.num_classes, mesh_lib.data_sharding(mesh)
    )
    step = build.eval_step(config, split)
    start = time.perf_counter()
    compiled = step.lower(params, stats, batch).compile()
    compile_s = time.perf_counter() - start
    return Runner("eval", batch_size, compile_s, compiled, lambda: compiled(params, stats, batch))


PREPARE = {"train": prepare_train, "eval": prepare_eval}


def measure(config: ConfigDict, split: SplitModel, mode: str) -> dict[str, Any]:
    """One JSON row: compile, then warm-up and timed steps of `mode`."""
    runner = PREPARE[mode](config, split)
    step_s = time_steps(runner.run, config.benchmark.warmup_steps, config.benchmark.steps)
    return _row(
        config,
        mode,
        runner.batch,
        runner.compile_s,
        step_s,
        compiled_flops(runner.compiled),
        runner.compiled,
    )


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 1e4 else f"{value:.3e}"
    return str(value)


def table(rows: list[dict[str, Any]], columns: tuple[str, ...] = FIELDS) -> str:
    """A Markdown table of `rows` (readable in a terminal and pasteable into docs)."""
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(_fmt(r.get(c)) for c in columns) + " |" for r in rows]
    return "\n".join(lines)


def _validate(config: ConfigDict) -> None:
    modes = [m for m in config.benchmark.modes.split(",") if m]
    bad = [m for m in modes if m not in ("train", "eval")]
    if bad or not modes:
        raise UserError(
            f"benchmark.modes={config.benchmark.modes!r}; use train, eval or train,eval"
        )
    if config.benchmark.steps < 1 or config.benchmark.warmup_steps < 0:
        raise UserError("benchmark.steps must be >= 1 and benchmark.warmup_steps >= 0")
    eval_batch = config.train.eval_batch_size or config.train.batch_size
    if eval_batch % jax.device_count():
        raise UserError(
            f"eval batch {eval_batch} is not divisible by the {jax.device_count()} devices"
        )


def run(config: ConfigDict, workdir: str | None = None) -> dict[str, Any]:
    """Measures the configured steps; prints one JSON line per measurement and a table.

    With a workdir the JSON lines are also appended to <workdir>/benchmark.jsonl.
    """
    build.validate(config)
    _validate(config)
    split = SplitModel(build.model(config))
    rows = [measure(config, split, m) for m in config.benchmark.modes.split(",") if m]
    if jax.process_index() == 0:
        for row in rows:
            print(json.dumps(row), flush=True)
        print(table(rows), flush=True)
        if workdir:
            os.makedirs(workdir, exist_ok=True)
            with open(os.path.join(workdir, "benchmark.jsonl"), "a") as f:
                f.writelines(json.dumps(r) + "\n" for r in rows)
    return {f"{r['mode']}_img_per_s": r["img_per_s"] for r in rows}

"""Our train/eval step next to the PyTorch reference, in one process, timed alternately.

    python -m benchmarks.compare_torch --models hardnet85,hrnet_w48,hlg_tiny --device cpu
    python -m benchmarks.compare_torch --models hardnet85,hrnet_w48 --device cuda --dtype bfloat16 \\
        --batch 256

Run from the repository root (`python -m`), or as `python benchmarks/compare_torch.py` once the
repository is installed (`pip install -e .`, as the Makefile's venv does). Both sides see the
same synthetic batch size and image size. Ours is main.py's step (train_lib.benchmark); the
reference is pytorchcv (HarDNet), timm (HRNet) or, for HLG, timm's PVT-v2 of similar cost (the
nearest transformer with a maintained implementation). On CPU PyTorch runs eager; on CUDA it
runs channels-last, with autocast for bfloat16, both eager and torch.compile'd (two rows).
Timing alternates between the frameworks round by round, so a machine whose load changes
during the run slows both alike; `vs_torch` is the ratio of median step times (> 1: we are faster).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

# HLG variant -> the PVT-v2 of similar MACs (timm names).
PVT_FOR_HLG = {
    "hlg_tiny": "pvt_v2_b1",
    "hlg_small": "pvt_v2_b2",
    "hlg_medium": "pvt_v2_b3",
    "hlg_large": "pvt_v2_b4",
}


def reference_name(model: str) -> tuple[str, str]:
    """(library, model name) of the PyTorch reference for one of our variants."""
    if model.startswith("hardnet"):
        return "pytorchcv", model
    if model.startswith("hrnet"):
        return "timm", model
    if model.startswith("hlg"):
        return "timm", PVT_FOR_HLG.get(model, "pvt_v2_b2")
    raise ValueError(f"no PyTorch reference for {model}")


def _sync(device: str) -> None:
    import torch

    if device == "cuda":
        torch.cuda.synchronize()


def torch_runner(
    model_name: str,
    mode: str,
    *,
    batch: int,
    size: int,
    dtype: str,
    device: str,
    compiled: bool,
    num_classes: int = 1000,
) -> Callable[[], None]:
    """One step of the reference: SGD-Nesterov train step or no-grad forward."""
    import torch

    library, name = reference_name(model_name)
    if library == "pytorchcv":
        from pytorchcv.model_provider import get_model

        model = get_model(name, pretrained=False, num_classes=num_classes)
        # pytorchcv pools with a fixed 7x7 window; the adaptive pool is the same op at 224 px
        # and lets small test sizes run.
        model.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)
    else:
        import timm

        model = timm.create_model(name, pretrained=False, num_classes=num_classes)
    model = model.to(device)
    if device == "cuda":
        model = model.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, size, size, device=device)
    if device == "cuda":
        x = x.to(memory_format=torch.channels_last)
    y = torch.randint(0, num_classes, (batch,), device=device)
    amp = dtype == "bfloat16"
    forward = torch.compile(model) if compiled else model
    if mode == "train":
        model.train()
        opt = torch.optim.SGD(
            model.parameters(), lr=0.01, momentum=0.9, nesterov=True, weight_decay=1e-4
        )

        def run() -> None:
            with torch.autocast(device, torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(forward(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _sync(device)
    else:
        model.eval()

        def run() -> None:
            with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=amp):
                forward(x)
            _sync(device)

    return run


def jax_runner(model_name: str, mode: str, *, batch: int, size: int, dtype: str):
    """main.py's step for `model_name` with the base recipe's SGD-Nesterov (as the reference)."""
    import jax

    from configs import base
    from train_lib import benchmark, build
    from train_lib.state import SplitModel

    config = base.get_config()
    config.model.name, config.model.dtype = model_name, dtype
    config.train.batch_size, config.data.image_size = batch, size
    split = SplitModel(build.model(config))
    runner = benchmark.PREPARE[mode](config, split)

    def run() -> None:
        jax.block_until_ready(runner.run())

    return run, runner


def limit_threads(n: int) -> None:
    """Both frameworks on `n` threads (XLA:CPU reads its flags when jax starts, so this must run
    before the first jax computation)."""
    import torch

    torch.set_num_threads(n)
    if n == 1:  # XLA:CPU has no thread-count flag; it can only turn its pool off (JAX FAQ)
        flags = os.environ.get("XLA_FLAGS", "")
        extra = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
        os.environ["XLA_FLAGS"] = f"{flags} {extra}".strip()


def _time(run: Callable[[], None], iters: int) -> float:
    start = time.perf_counter()
    for _ in range(iters):
        run()
    return (time.perf_counter() - start) / iters


def _progress(model: str, mode: str, framework: str, first_step_s: float) -> None:
    """One stderr line per prepared runner: compiles take minutes on GPU and the timing waits."""
    print(
        f"compare_torch: {model} {mode} {framework} ready: compile or first step took {first_step_s:.1f} s",
        file=sys.stderr,
        flush=True,
    )


def compare(model: str, mode: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows for our step and each reference flavour, timed in alternating rounds."""
    shape = {"batch": args.batch, "size": args.size, "dtype": args.dtype}
    ours, runner = jax_runner(model, mode, **shape)
    runners: dict[str, Callable[[], None]] = {"jax": ours}
    flavours = ["eager", "compile"] if args.device == "cuda" else ["eager"]
    if args.torch_compile is not None:
        flavours = ["eager", "compile"] if args.torch_compile else ["eager"]
    compile_s = {"jax": runner.compile_s}
    _progress(model, mode, "jax", compile_s["jax"])
    for flavour in flavours:
        run = torch_runner(model, mode, device=args.device, compiled=flavour == "compile", **shape)
        start = time.perf_counter()
        run()  # torch.compile compiles here; eager pays its one-off allocations
        compile_s[f"torch-{flavour}"] = time.perf_counter() - start
        runners[f"torch-{flavour}"] = run
        _progress(model, mode, f"torch-{flavour}", compile_s[f"torch-{flavour}"])
    for run in runners.values():  # warm-up
        for _ in range(args.warmup):
            run()
    times: dict[str, list[float]] = {k: [] for k in runners}
    for _ in range(args.rounds):
        for key, run in runners.items():
            times[key].append(_time(run, args.iters))
    median = {k: statistics.median(v) for k, v in times.items()}
    import jax

    from train_lib import benchmark

    flops = benchmark.compiled_flops(runner.compiled)  # per device, per step
    flops_per_image = flops * jax.device_count() / args.batch if flops else None
    peak = benchmark.peak_tflops(jax.devices()[0].device_kind, args.dtype, args.peak_tflops)
    same_model = reference_name(model)[1] == model
    rows = []
    for key in runners:
        row = {
            "model": model,
            "reference": reference_name(model)[1] if key != "jax" else model,
            "framework": key,
            "mode": mode,
            "batch": args.batch,
            "image_size": args.size,
            "dtype": args.dtype,
            "device": args.device,
            "compile_s": round(compile_s[key], 2),
            "step_ms": round(median[key] * 1e3, 2),
            "img_per_s": round(args.batch / median[key], 2),
            "rounds_ms": [round(t * 1e3, 1) for t in times[key]],
        }
        # MFU of the reference uses our count of the model's FLOPs (the same network); the
        # PVT stand-ins for HLG get none.
        if flops and peak and (key == "jax" or same_model):
            row["mfu"] = round(flops / median[key] / (peak * 1e12), 4)
        if key == "jax":
            row["flops_per_image"] = flops_per_image
            row["peak_mem_bytes"] = benchmark.peak_device_memory()
            for other in runners:
                if other != "jax":
                    row[f"vs_{other}"] = round(median[other] / median["jax"], 3)
        rows.append(row)
    return rows


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="hardnet85,hrnet_w48,hlg_tiny")
    parser.add_argument("--modes", default="train,eval")
    parser.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--iters", type=int, default=2, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=3, help="alternating rounds per framework")
    parser.add_argument(
        "--torch-compile",
        type=lambda s: s.lower() in ("1", "true", "yes"),
        default=None,
        help="add a torch.compile row (default: on CUDA only)",
    )
    parser.add_argument(
        "--threads",
        type=int,
        default=0,
        help="CPU threads per framework (0 = their defaults; XLA can only do 1); 1 is fair on a "
        "loaded machine, where waiting for descheduled threads dominates",
    )
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="device peak for --dtype (default: train_lib.benchmark's table)",
    )
    parser.add_argument("--out", default="", help="also append the JSON lines to this file")
    parser.add_argument(
        "--table",
        default="",
        help="write a Markdown table (with machine, versions and this command) to this file",
    )
    args = parser.parse_args(argv)
    if args.threads:
        limit_threads(args.threads)
    import jax

    platform = jax.devices()[0].platform
    if (args.device == "cuda") != (platform == "gpu"):
        parser.error(f"--device={args.device} but jax runs on {platform}")
    rows = []
    for model in [m for m in args.models.split(",") if m]:
        for mode in [m for m in args.modes.split(",") if m]:
            new_rows = compare(model, mode, args)
            rows += new_rows
            # Written as each comparison ends, so a run stopped by a time limit keeps its rows.
            if args.out:
                with open(args.out, "a") as f:
                    f.writelines(json.dumps(r) + "\n" for r in new_rows)
            if args.table:
                with open(args.table, "w") as f:
                    f.write(markdown(rows, argv) + "\n")
            for row in new_rows:
                print(json.dumps(row), flush=True)
    print(markdown(rows, argv))
    return rows


COLUMNS = (
    "model",
    "reference",
    "framework",
    "mode",
    "batch",
    "image_size",
    "dtype",
    "compile_s",
    "step_ms",
    "img_per_s",
    "vs_torch-eager",
    "vs_torch-compile",
    "mfu",
    "peak_mem_bytes",
)


def machine() -> str:
    """One line naming the device, host CPU count and library versions."""
    import platform

    import jax
    import torch

    device = jax.devices()[0]
    return (
        f"{jax.device_count()} x {device.device_kind} ({device.platform}), "
        f"{os.cpu_count()} CPU cores, python {platform.python_version()}, jax {jax.__version__}, "
        f"torch {torch.__version__}"
    )


def markdown(rows: list[dict[str, Any]], argv: list[str] | None = None) -> str:
    from train_lib.benchmark import table

    command = " ".join(
        ["python -m benchmarks.compare_torch", *(argv if argv is not None else sys.argv[1:])]
    )
    return f"Machine: {machine()}\n\nCommand: `{command}`\n\n{table(rows, COLUMNS)}"


if __name__ == "__main__":
    main()

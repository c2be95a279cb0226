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
On a GPU, benchmarks/gpu_suite.sh runs one process per (model, framework) instead, compiling
at the same time and timing one after another (--frameworks, --sync-dir, then --merge).
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import json
import os
import statistics
import sys
import time
from collections.abc import Callable, Iterator
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


# Several processes on one GPU (benchmarks/gpu_suite.sh): compiling dominates a GPU comparison
# (XLA's train step with its convolution autotuning and torch.compile's Inductor take one to
# several minutes each, mostly on the host's CPU cores) while the timed steps take seconds. So the
# suite starts one process per (model, framework); each, once prepared, waits at a barrier for
# the others (or a deadline) and then times its steps holding a file lock: no timed step shares
# the GPU with another process's compile or steps. (Here, not in a module of its own, so that this
# file also runs as `python benchmarks/compare_torch.py`.)


def arrive(sync_dir: str) -> None:
    """Marks this process as past its preparation (ready to time, or failed: either way the
    others need not wait for it)."""
    os.makedirs(sync_dir, exist_ok=True)
    with open(os.path.join(sync_dir, f"arrived.{os.getpid()}"), "w"):
        pass


def _arrived(sync_dir: str) -> int:
    return sum(name.startswith("arrived.") for name in os.listdir(sync_dir))


@contextlib.contextmanager
def timing_turn(sync_dir: str, expect: int, wait_s: float) -> Iterator[bool]:
    """Waits until `expect` processes have arrived (or `wait_s` has passed), then holds the
    lock shared by all of them for the body; yields whether every one had arrived by then
    (False: some process may still have been compiling while this one timed)."""
    arrive(sync_dir)
    deadline = time.monotonic() + wait_s
    while _arrived(sync_dir) < expect and time.monotonic() < deadline:
        time.sleep(0.2)
    with open(os.path.join(sync_dir, "timing.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield _arrived(sync_dir) >= expect
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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


FRAMEWORKS = ("jax", "torch-eager", "torch-compile")


def frameworks(args: argparse.Namespace) -> list[str]:
    """The rows to measure: --frameworks, else ours and PyTorch eager, plus torch.compile on
    CUDA (or as --torch-compile says)."""
    if args.frameworks:
        return [f for f in FRAMEWORKS if f in args.frameworks.split(",")]
    compiled = args.device == "cuda" if args.torch_compile is None else args.torch_compile
    return ["jax", "torch-eager"] + (["torch-compile"] if compiled else [])


def compare(model: str, mode: str, args: argparse.Namespace) -> list[dict[str, Any]]:
    """Rows for our step and each reference flavour asked for, timed in alternating rounds
    (with --sync-dir: after the other processes of the suite have compiled, one at a time)."""
    shape = {"batch": args.batch, "size": args.size, "dtype": args.dtype}
    runners: dict[str, Callable[[], None]] = {}
    compile_s: dict[str, float] = {}
    jax_row: dict[str, Any] = {}
    for key in frameworks(args):
        if key == "jax":
            runners[key], runner = jax_runner(model, mode, **shape)
            compile_s[key] = runner.compile_s
            jax_row = _jax_fields(runner, args)
        else:
            run = torch_runner(
                model, mode, device=args.device, compiled=key == "torch-compile", **shape
            )
            start = time.perf_counter()
            run()  # torch.compile compiles here; eager pays its one-off allocations
            compile_s[key] = time.perf_counter() - start
            runners[key] = run
            _release_torch_cache(args.device)
        _progress(model, mode, key, compile_s[key])
    turn = (
        timing_turn(args.sync_dir, args.expect, args.wait_s)
        if args.sync_dir
        else contextlib.nullcontext(None)
    )
    with turn as timed_alone:
        for run in runners.values():  # warm-up
            for _ in range(args.warmup):
                run()
        times: dict[str, list[float]] = {k: [] for k in runners}
        for _ in range(args.rounds):
            for key, run in runners.items():
                times[key].append(_time(run, args.iters))
    rows = []
    for key, key_times in times.items():
        median = statistics.median(key_times)
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
            "step_ms": round(median * 1e3, 2),
            "img_per_s": round(args.batch / median, 2),
            "rounds_ms": [round(t * 1e3, 1) for t in key_times],
        }
        if timed_alone is not None:  # --sync-dir: had every other process compiled?
            row["timed_after_all_compiled"] = timed_alone
        if key == "jax":
            from train_lib import benchmark

            row.update(jax_row, peak_mem_bytes=benchmark.peak_device_memory())
        rows.append(row)
    return add_ratios(rows)


def _jax_fields(runner: Any, args: argparse.Namespace) -> dict[str, Any]:
    """FLOPs per image from XLA's cost analysis and the device's peak, for MFU."""
    import jax

    from train_lib import benchmark

    flops = benchmark.compiled_flops(runner.compiled)  # per device, per step
    peak = benchmark.peak_tflops(jax.devices()[0].device_kind, args.dtype, args.peak_tflops)
    return {
        "flops_per_image": flops * jax.device_count() / args.batch if flops else None,
        "peak_tflops_per_device": peak,
        "devices": jax.device_count(),
    }


def _release_torch_cache(device: str) -> None:
    """Hands PyTorch's cached blocks back, so that a process waiting for its timing turn holds
    only its weights and optimizer state while the others compile."""
    if device == "cuda":
        import torch

        torch.cuda.empty_cache()


def add_ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Our row of each (model, mode, shape) gets `vs_<framework>` (reference step time / ours;
    > 1: we are faster); every row gets MFU from our FLOPs count, except the PVT stand-ins for
    HLG (another network). Rows may come from different processes (benchmarks/gpu_suite.sh)."""

    def group(row: dict[str, Any]) -> tuple:
        return tuple(row[k] for k in ("model", "mode", "batch", "image_size", "dtype"))

    ours = {group(r): r for r in rows if r["framework"] == "jax"}
    for row in rows:
        jax_row = ours.get(group(row))
        if jax_row is None:
            continue
        flops, peak = jax_row.get("flops_per_image"), jax_row.get("peak_tflops_per_device")
        if flops and peak and row["reference"] == row["model"]:
            per_device = row["img_per_s"] / jax_row.get("devices", 1)
            row["mfu"] = round(flops * per_device / (peak * 1e12), 4)
        if row is not jax_row:
            jax_row[f"vs_{row['framework']}"] = round(row["step_ms"] / jax_row["step_ms"], 3)
    return rows


def merge(paths: list[str], models: list[str]) -> list[dict[str, Any]]:
    """The rows of several processes' JSON-lines files, in table order, ratios recomputed."""
    rows = [json.loads(line) for path in paths for line in open(path) if line.strip()]
    for row in rows:
        for key in [k for k in row if k.startswith("vs_") or k == "mfu"]:
            del row[key]
    order = {m: i for i, m in enumerate(models)}
    modes = {"train": 0, "eval": 1}
    rows.sort(
        key=lambda r: (
            order.get(r["model"], len(order)),
            r["model"],
            modes.get(r["mode"], 2),
            FRAMEWORKS.index(r["framework"]),
        )
    )
    return add_ratios(rows)


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
        "--frameworks",
        default="",
        help=f"comma-separated subset of {','.join(FRAMEWORKS)} (overrides --torch-compile)",
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
    parser.add_argument(
        "--sync-dir",
        default="",
        help="with other processes given the same folder: time only after --expect of them have "
        "compiled (or --wait-s passed), one process at a time (benchmarks/gpu_suite.sh)",
    )
    parser.add_argument("--expect", type=int, default=1)
    parser.add_argument("--wait-s", type=float, default=600.0)
    parser.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSONL",
        help="measure nothing: merge these processes' JSON lines into --out and --table",
    )
    parser.add_argument("--out", default="", help="also append the JSON lines to this file")
    parser.add_argument(
        "--table",
        default="",
        help="write a Markdown table (with machine, versions and this command) to this file",
    )
    parser.add_argument(
        "--command", default="", help="the command the table names (default: this one)"
    )
    args = parser.parse_args(argv)
    if unknown := set(filter(None, args.frameworks.split(","))) - set(FRAMEWORKS):
        parser.error(f"--frameworks: unknown {sorted(unknown)}; choose from {FRAMEWORKS}")
    command = args.command or " ".join(
        ["python -m benchmarks.compare_torch", *(argv if argv is not None else sys.argv[1:])]
    )
    if args.merge is not None:
        rows = merge(args.merge, [m for m in args.models.split(",") if m])
        _write(rows, rows, args, command, mode="w")
        print(markdown(rows, command))
        return rows
    if args.threads:
        limit_threads(args.threads)
    import jax

    platform = jax.devices()[0].platform
    if (args.device == "cuda") != (platform == "gpu"):
        parser.error(f"--device={args.device} but jax runs on {platform}")
    rows: list[dict[str, Any]] = []
    try:
        for model in [m for m in args.models.split(",") if m]:
            for mode in [m for m in args.modes.split(",") if m]:
                new_rows = compare(model, mode, args)
                rows += new_rows
                # Written as each comparison ends: a run stopped by a time limit keeps its rows.
                _write(rows, new_rows, args, command, mode="a")
    finally:
        if args.sync_dir:  # failed or done: nobody waits for this process
            arrive(args.sync_dir)
    if not args.sync_dir:  # one part of a suite's table is not worth printing
        print(markdown(rows, command))
    return rows


def _write(
    rows: list[dict[str, Any]],
    new_rows: list[dict[str, Any]],
    args: argparse.Namespace,
    command: str,
    mode: str,
) -> None:
    for row in new_rows:
        print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, mode) as f:
            f.writelines(json.dumps(r) + "\n" for r in new_rows)
    if args.table:
        with open(args.table, "w") as f:
            f.write(markdown(rows, command) + "\n")


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


def markdown(rows: list[dict[str, Any]], command: str) -> str:
    from train_lib.benchmark import table

    return f"Machine: {machine()}\n\nCommand: `{command}`\n\n{table(rows, COLUMNS)}"


if __name__ == "__main__":
    main()

"""--mode=benchmark and --mode=analyze at tiny sizes, MACs/CIO by hand, the FLOP counts against
PyTorch's own counter, and the benchmark scripts end to end on CPU. Nothing here is timed."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import base
from models import layers
from models.hardnet import HarDBlock
from train_lib import analyze, benchmark, build, steps
from train_lib.state import SplitModel

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _main(*args: str, timeout: int = 600) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "main.py", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


# hardnet39ds with 10 classes at 32 px: what the benchmark and analyze runs measure.
TINY_HARDNET = (
    "--config",
    "configs/hardnet39ds.py",
    "--config.model.num_classes=10",
    "--config.data.image_size=32",
)


def _json_lines(stdout: str) -> list[dict]:
    return [json.loads(line) for line in stdout.splitlines() if line.startswith("{")]


@pytest.mark.slow  # main.py subprocess
@pytest.mark.xdist_group("benchmark")
def test_benchmark_mode_reports_every_field(tmp_path):
    proc = _main(
        "--mode=benchmark",
        *TINY_HARDNET,
        "--config.train.batch_size=2",
        "--config.benchmark.steps=2",
        "--config.benchmark.warmup_steps=1",
        "--config.benchmark.peak_tflops=1.0",
        f"--workdir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _json_lines(proc.stdout)
    assert [r["mode"] for r in rows] == ["train", "eval"]
    for row in rows:
        assert set(benchmark.FIELDS) <= set(row)
        assert row["model"] == "hardnet39ds" and row["batch"] == 2 and row["image_size"] == 32
        assert row["dtype"] == "float32" and row["devices"] == 1
        assert row["compile_s"] > 0 and row["step_ms"] > 0
        assert row["img_per_s"] == pytest.approx(2 / (row["step_ms"] / 1e3), rel=0.01)
        assert 0 < row["mfu"] < 1  # against the 1 TFLOP/s given on the command line
        assert row["peak_mem_bytes"] > 0
    # hardnet39ds: 0.43 GMACs at 224 px, so ~0.86 * (32/224)^2 GFLOPs at 32 px; a train step
    # costs about 3 forwards plus the optimizer's per-parameter work (large at 2 tiny images).
    fwd = 2 * 429_471_474 * (32 / 224) ** 2
    eval_row, train_row = rows[1], rows[0]
    assert 0.8 * fwd < eval_row["flops_per_image"] < 1.3 * fwd
    optimizer = 40 * 3.5e6 / 2  # <= 40 FLOPs per parameter per step, over 2 images
    assert 2.5 * fwd < train_row["flops_per_image"] < 3.5 * fwd + optimizer
    assert "| hardnet39ds | train |" in proc.stdout
    saved = [json.loads(line) for line in open(tmp_path / "benchmark.jsonl")]
    assert saved == rows


def test_benchmark_mode_rejects_bad_modes():
    proc = _main(
        "--mode=benchmark",
        "--config",
        "configs/hardnet39ds.py",
        "--config.benchmark.modes=infer",
        timeout=300,
    )
    assert proc.returncode == 2 and proc.stderr.startswith("error: benchmark.modes")
    assert "Traceback" not in proc.stderr


def test_train_mode_still_needs_a_workdir():
    proc = _main("--config", "configs/hardnet39ds.py", timeout=120)
    assert (
        proc.returncode == 2
        and proc.stderr.strip() == "error: --workdir is required for --mode=train"
    )


def test_peak_table_and_override():
    assert benchmark.peak_tflops("NVIDIA H100 80GB HBM3", "bfloat16") == 989.4
    assert benchmark.peak_tflops("NVIDIA H100 PCIe", "bfloat16") == 756.0
    assert benchmark.peak_tflops("NVIDIA A100-SXM4-80GB", "float32") == 156.0
    assert benchmark.peak_tflops("cpu", "float32") is None
    assert benchmark.peak_tflops("cpu", "float32", override=2.5) == 2.5


@pytest.mark.slow  # main.py subprocess
@pytest.mark.xdist_group("benchmark")
def test_analyze_mode_reports_every_field(tmp_path):
    proc = _main(
        "--mode=analyze",
        *TINY_HARDNET,
        f"--workdir={tmp_path}",
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    (row,) = _json_lines(proc.stdout)
    assert row["model"] == "hardnet39ds" and row["params"] > 0
    assert row["macs"] > row["conv_macs"] > 0 and row["cio_bytes"] > 0
    assert row["forward_temp_bytes"] > 0 and row["train_temp_bytes"] > row["forward_temp_bytes"]
    layers_ = row["layers"]
    assert sum(r["macs"] for r in layers_) == row["macs"]
    assert sum(r["cio_bytes"] for r in layers_) == row["cio_bytes"]
    assert layers_[0]["name"] == "base.0.conv" and layers_[0]["input"] == [1, 32, 32, 3]
    assert layers_[-1]["op"] == "dense" and layers_[-1]["output"] == [1, 10]
    assert any(r["op"].startswith("dwconv3x3") for r in layers_)
    assert json.loads(open(tmp_path / "analyze.jsonl").readline()) == row


class _OneConv(nnx.Module):
    def __init__(self, dtype):
        self.conv = layers.conv2d(6, 10, 3, stride=2, dtype=dtype, rngs=nnx.Rngs(0))

    def __call__(self, x):
        return self.conv(x)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_single_conv_macs_and_cio_by_hand(dtype):
    split = SplitModel(nnx.eval_shape(lambda: _OneConv(dtype)))
    (row,) = analyze.layer_table(split, 16, dtype, channels=6)
    # 16x16x6 in, 3x3 stride 2 pad 1 -> 8x8x10 out; each output element is 3*3*6 MACs.
    assert row["name"] == "conv" and row["op"] == "conv3x3/s2"
    assert row["output"] == [1, 8, 8, 10]
    assert row["macs"] == 8 * 8 * 10 * 3 * 3 * 6
    itemsize = 4 if dtype == jnp.float32 else 2
    assert row["cio_bytes"] == (16 * 16 * 6 + 8 * 8 * 10) * itemsize


def test_hardnet_block_macs_by_hand():
    # growth 4, grmul 1.7, 4 layers on 8 channels: layer k reads k-1, k-2, k-4 (where 2^i | k).
    # widths (in -> out): 1: 8 -> 4; 2: 4+8 -> 6 (4*1.7=6.8 -> 6); 3: 6 -> 4;
    # 4: 4+6+8 -> 12 (4*1.7^2=11.56 -> 12). Every layer is a 3x3 conv on an 8x8 map.
    block = nnx.eval_shape(
        lambda: HarDBlock(8, 4, 1.7, 4, depthwise=False, dtype=jnp.float32, rngs=nnx.Rngs(0))
    )
    rows = analyze.layer_table(SplitModel(block), 8, jnp.float32, channels=8)
    widths = [(8, 4), (12, 6), (6, 4), (18, 12)]
    assert [(r["input"][-1], r["output"][-1]) for r in rows] == widths
    assert [r["name"] for r in rows] == [f"layers.{i}.conv" for i in range(4)]
    assert sum(r["macs"] for r in rows) == 8 * 8 * 9 * (8 * 4 + 12 * 6 + 6 * 4 + 18 * 12)
    assert sum(r["cio_bytes"] for r in rows) == 4 * 8 * 8 * sum(i + o for i, o in widths)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["hardnet68", "hardnet39ds", "hrnet_w18_small"])
def test_macs_agree_with_torch_flop_counter(name):
    """PyTorch's own counter on the reference implementation (pytorchcv / timm). pytorchcv's
    HarDNet pools with a fixed 7x7 window, so it needs 224 px (a shape-only trace on our side)."""
    import timm
    import torch
    from pytorchcv.model_provider import get_model
    from torch.utils.flop_counter import FlopCounterMode

    ref = (
        get_model(name, pretrained=False) if name.startswith("hardnet") else timm.create_model(name)
    )
    ref.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        size = 224 if name.startswith("hardnet") else 64
        ref(torch.zeros(1, 3, size, size))
    config = base.get_config()
    config.model.name, config.data.image_size = name, size
    ours = analyze.analyze(config, memory=False)["macs"]
    assert ours == pytest.approx(counter.get_total_flops() / 2, rel=0.02)


def test_compiled_flops_of_a_matmul():
    compiled = jax.jit(lambda a, b: a @ b).lower(jnp.ones((4, 8)), jnp.ones((8, 16))).compile()
    assert benchmark.compiled_flops(compiled) == 2 * 4 * 8 * 16


@pytest.mark.slow  # main.py and PyTorch benchmark steps in subprocesses
@pytest.mark.xdist_group("benchmark")
def test_gpu_suite_runs_on_cpu_at_tiny_sizes(tmp_path):
    """The GPU suite end to end on CPU: our steps and the PyTorch reference, one table."""
    env = {
        **os.environ,
        "MODELS": "hardnet39ds",
        "DEVICE": "cpu",
        "DTYPE": "float32",
        "BATCH": "2",
        "SIZE": "32",
        "ITERS": "1",
        "ROUNDS": "2",
        "PYTHON": sys.executable,
    }
    proc = subprocess.run(
        ["bash", "benchmarks/gpu_suite.sh", str(tmp_path)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # One process per (mode, framework), each with its own rows and log.
    parts = sorted(os.listdir(tmp_path / "parts"))
    assert parts == [
        f"{mode}-hardnet39ds-{framework}.jsonl"
        for mode in ("eval", "train")
        for framework in ("jax", "torch-eager")
    ]
    assert len(os.listdir(tmp_path / "logs")) == 4
    rows = [json.loads(line) for line in open(tmp_path / "compare.jsonl")]
    assert [(r["framework"], r["mode"]) for r in rows] == [
        ("jax", "train"),
        ("torch-eager", "train"),
        ("jax", "eval"),
        ("torch-eager", "eval"),
    ]
    for row in rows:
        assert row["step_ms"] > 0 and len(row["rounds_ms"]) == 2
        assert row["timed_after_all_compiled"]
        assert row["img_per_s"] == pytest.approx(2e3 / row["step_ms"], rel=0.01, abs=0.01)
    jax_train = rows[0]
    assert jax_train["vs_torch-eager"] == pytest.approx(
        rows[1]["step_ms"] / jax_train["step_ms"], rel=0.01, abs=0.001
    )
    assert jax_train["flops_per_image"] > 0
    table = (tmp_path / "gpu_table.md").read_text()
    assert table.startswith("Machine: 1 x cpu") and "jax 0." in table and "torch 2." in table
    assert (
        'MODELS="hardnet39ds"' in table
        and "| hardnet39ds | hardnet39ds | torch-eager | eval |" in table
    )


def test_compare_torch_references():
    from benchmarks import compare_torch

    assert compare_torch.reference_name("hardnet85") == ("pytorchcv", "hardnet85")
    assert compare_torch.reference_name("hrnet_w48") == ("timm", "hrnet_w48")
    assert compare_torch.reference_name("hlg_tiny") == ("timm", "pvt_v2_b1")


def test_compare_torch_in_one_process_alternates_and_writes_its_table(tmp_path, capsys):
    """The CPU way (no --sync-dir): both frameworks in one process, rounds alternating."""
    from benchmarks import compare_torch

    argv = ["--models", "hardnet39ds", "--modes", "eval", "--batch", "2", "--size", "32"]
    argv += ["--iters", "1", "--rounds", "2", "--out", str(tmp_path / "c.jsonl")]
    rows = compare_torch.main([*argv, "--table", str(tmp_path / "t.md")])
    assert [r["framework"] for r in rows] == ["jax", "torch-eager"]
    assert [json.loads(line) for line in open(tmp_path / "c.jsonl")] == rows
    assert rows[0]["vs_torch-eager"] == pytest.approx(
        rows[1]["step_ms"] / rows[0]["step_ms"], rel=0.01, abs=0.001
    )
    assert "--models hardnet39ds" in (tmp_path / "t.md").read_text()
    assert "| hardnet39ds | hardnet39ds | torch-eager | eval |" in capsys.readouterr().out


def test_merged_rows_get_ratios_and_mfu_across_processes(tmp_path):
    """What gpu_suite.sh's processes write, merged: table order, vs_<framework> on our row, MFU
    from our FLOPs count for the same network, none for a stand-in reference."""
    from benchmarks import compare_torch

    def row(model, reference, framework, mode, step_ms, **extra):
        return {
            "model": model,
            "reference": reference,
            "framework": framework,
            "mode": mode,
            "batch": 8,
            "image_size": 224,
            "dtype": "bfloat16",
            "step_ms": step_ms,
            "img_per_s": 8e3 / step_ms,
            **extra,
        }

    ours = {"flops_per_image": 1e9, "peak_tflops_per_device": 100.0, "devices": 1}
    files = {
        "a": [row("hrnet_w48", "hrnet_w48", "torch-compile", "train", 40.0)],
        "b": [row("hlg_tiny", "hlg_tiny", "jax", "eval", 10.0, **ours)],
        "c": [row("hrnet_w48", "hrnet_w48", "jax", "train", 20.0, **ours, mfu=0.5)],
        "d": [row("hlg_tiny", "pvt_v2_b1", "torch-eager", "eval", 30.0)],
        "e": [row("hrnet_w48", "hrnet_w48", "torch-eager", "train", 50.0)],
    }
    paths = []
    for name, rows in files.items():
        paths.append(str(tmp_path / f"{name}.jsonl"))
        with open(paths[-1], "w") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    merged = compare_torch.merge(paths, ["hrnet_w48", "hlg_tiny"])
    assert [(r["model"], r["framework"]) for r in merged] == [
        ("hrnet_w48", "jax"),
        ("hrnet_w48", "torch-eager"),
        ("hrnet_w48", "torch-compile"),
        ("hlg_tiny", "jax"),
        ("hlg_tiny", "torch-eager"),
    ]
    w48, eager, compiled, hlg, pvt = merged
    assert w48["vs_torch-eager"] == 2.5 and w48["vs_torch-compile"] == 2.0
    # 400 img/s x 1 GFLOP / 100 TFLOP/s; the stale mfu of the file is recomputed.
    assert w48["mfu"] == pytest.approx(0.004) and compiled["mfu"] == pytest.approx(0.002)
    assert eager["mfu"] == pytest.approx(0.0016)
    assert hlg["vs_torch-eager"] == 3.0 and "mfu" not in pvt


def test_timing_turn_waits_for_the_others_or_its_deadline(tmp_path):
    """A prepared process waits until every expected process has arrived, at most wait_s."""
    import time

    from benchmarks import compare_torch

    sync = str(tmp_path / "sync")
    start = time.monotonic()
    with compare_torch.timing_turn(sync, expect=2, wait_s=0.5) as all_arrived:
        waited = time.monotonic() - start
    assert 0.5 <= waited < 5 and not all_arrived
    start = time.monotonic()  # everyone expected has arrived: no wait
    with compare_torch.timing_turn(sync, expect=1, wait_s=30) as all_arrived:
        assert time.monotonic() - start < 5 and all_arrived


def test_input_pipeline_benchmark_on_a_made_folder(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "benchmarks.input_pipeline",
            f"--data=folder:{tmp_path}",
            "--make-data=24",
            "--batch=4",
            "--size=32",
            "--batches=2",
            "--warmup=1",
            "--augmentations=color_jitter",
            f"--out={tmp_path / 'rows.jsonl'}",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    base_row, erase = [json.loads(line) for line in open(tmp_path / "rows.jsonl")]
    assert base_row["augmentation"] == "base" and base_row["img_per_s"] > 0
    assert base_row["img_per_s_per_core"] == pytest.approx(base_row["img_per_s"], rel=0.01)
    assert erase["augmentation"] == "color_jitter"
    assert erase.get("img_per_s", 0) > 0 or "color_jitter" in erase["skipped"]
    assert len(os.listdir(tmp_path / "train")) == 10


def test_benchmark_and_analyze_do_not_import_tensorflow():
    """GPU hosts without TensorFlow must run --mode=benchmark/analyze and the GPU suite."""
    code = (
        "import sys, train_lib.benchmark, train_lib.analyze, benchmarks.compare_torch; "
        "print('tensorflow' in sys.modules)"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "False"


@pytest.mark.slow  # a train-step compile
def test_benchmark_times_the_step_training_runs(monkeypatch):
    """--mode=benchmark builds the step through the same function as train.run: every train.*
    option reaches it (label_smoothing_mode once did not), with the state those options need."""
    seen = {}
    make = steps.make_train_step
    monkeypatch.setattr(
        steps, "make_train_step", lambda *a, **kw: seen.update(kw) or make(*a, **kw)
    )
    config = base.get_config()
    config.model.update(name="hardnet39ds", num_classes=10)
    config.data.image_size = 32
    config.train.update(
        batch_size=2, label_smoothing=0.1, label_smoothing_mode="others", ema_decay=0.9
    )
    runner = benchmark.prepare_train(config, SplitModel(build.model(config)))
    assert seen["label_smoothing_mode"] == "others"
    assert (seen["label_smoothing"], seen["ema_decay"]) == (0.1, 0.9)
    assert np.isfinite(float(runner.run()["loss"]))

"""Throughput of our train/eval steps next to the PyTorch reference, in one run.

    python benchmarks/throughput.py --model hardnet68 --batch 64 --size 224 --mode train
    python benchmarks/throughput.py --model hrnet_w48 --mode eval --dtype bfloat16 --torch none

Uses synthetic uint8 batches already on device (no TensorFlow), the same jitted step as main.py,
and reports compile time, step time, img/s and (on GPU) peak device memory. The reference is
pytorchcv (HarDNet) or timm (HRNet), run on the same host with the same batch.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _time(fn, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    start = time.perf_counter()
    for _ in range(iters):
        fn()
    return (time.perf_counter() - start) / iters


def bench_jax(args) -> dict:
    import jax
    import jax.numpy as jnp
    import optax
    from flax import nnx

    import models
    from configs import base
    from train_lib import mesh as mesh_lib
    from train_lib import optim, steps
    from train_lib.loop import DTYPES
    from train_lib.state import SplitModel, TrainState

    info = models.info(args.model)
    dtype = DTYPES[args.dtype]
    t0 = time.perf_counter()
    split = SplitModel(models.create(args.model, dtype=dtype, rngs=nnx.Rngs(0)))
    init_s = time.perf_counter() - t0
    mesh = mesh_lib.make_mesh()
    data = mesh_lib.data_sharding(mesh)
    rng = jax.random.key(0)
    batch = {
        "image": jax.device_put(jax.random.randint(rng, (args.batch, args.size, args.size, 3), 0,
                                                   256, jnp.int32).astype(jnp.uint8), data),
        "label": jax.device_put(jax.random.randint(rng, (args.batch,), 0, 1000), data),
        "mask": jax.device_put(jnp.ones((args.batch,), bool), data),
    }
    pre = {"mean": info.mean, "std": info.std, "dtype": dtype}
    if args.mode == "train":
        config = base.get_config()
        tx = optim.create_optimizer(config, optax.constant_schedule(0.01))
        state = jax.device_put(TrainState(
            step=jnp.zeros((), jnp.int32), params=split.initial_params,
            batch_stats=split.initial_stats, opt_state=tx.init(split.initial_params),
            rng=jax.random.key_data(rng)), mesh_lib.replicated(mesh))
        step = steps.make_train_step(split, tx, label_smoothing=0.0, mesh=mesh, **pre)
        t0 = time.perf_counter()
        compiled = step.lower(state, batch).compile()
        compile_s = time.perf_counter() - t0
        holder = [state]

        def run():
            holder[0], metrics = compiled(holder[0], batch)
            jax.block_until_ready(metrics)
    else:
        step = steps.make_eval_step(split, **pre)
        params, stats = split.initial_params, split.initial_stats
        t0 = time.perf_counter()
        compiled = step.lower(params, stats, batch).compile()
        compile_s = time.perf_counter() - t0

        def run():
            jax.block_until_ready(compiled(params, stats, batch))

    step_s = _time(run, args.warmup, args.iters)
    out = {"framework": "jax", "device": jax.devices()[0].device_kind, "init_s": round(init_s, 2),
           "compile_s": round(compile_s, 2), "step_ms": round(step_s * 1e3, 2),
           "img_per_s": round(args.batch / step_s, 1)}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_mem_gib"] = round(stats["peak_bytes_in_use"] / 2**30, 2)
    return out


def bench_torch(args) -> dict | None:
    import torch

    family = args.model.split("_")[0]
    if args.torch == "none":
        return None
    if family.startswith("hardnet"):
        from pytorchcv.model_provider import get_model

        model = get_model(args.model, pretrained=False)
    elif family == "hrnet":
        import timm

        model = timm.create_model(args.model, pretrained=False)
    else:
        return None
    device = "cuda" if torch.cuda.is_available() else "cpu"
    model = model.to(device).to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).to(
        memory_format=torch.channels_last)
    y = torch.randint(0, 1000, (args.batch,), device=device)
    amp = args.dtype == "bfloat16"
    if args.mode == "train":
        model.train()
        opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9, nesterov=True)

        def run():
            with torch.autocast(device, torch.bfloat16, enabled=amp):
                loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            if device == "cuda":
                torch.cuda.synchronize()
    else:
        model.eval()

        def run():
            with torch.no_grad(), torch.autocast(device, torch.bfloat16, enabled=amp):
                model(x)
            if device == "cuda":
                torch.cuda.synchronize()

    step_s = _time(run, args.warmup, args.iters)
    return {"framework": "torch", "device": device, "step_ms": round(step_s * 1e3, 2),
            "img_per_s": round(args.batch / step_s, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="hardnet68")
    parser.add_argument("--mode", choices=("train", "eval"), default="train")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--iters", type=int, default=5)
    parser.add_argument("--torch", choices=("auto", "none"), default="auto")
    args = parser.parse_args()
    rows = [bench_jax(args)]
    ref = bench_torch(args) if args.torch != "none" else None
    if ref:
        rows.append(ref)
        rows[0]["vs_torch"] = round(rows[0]["img_per_s"] / ref["img_per_s"], 2)
    for row in rows:
        print(json.dumps({"model": args.model, "mode": args.mode, "batch": args.batch,
                          "size": args.size, "dtype": args.dtype, **row}))


if __name__ == "__main__":
    main()

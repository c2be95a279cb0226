"""Time one MindSpore training step of a model, next to `main.py --mode=benchmark` on the JAX side.

    python -m ascend_port.bench --model hrnet_w18_small --batch 8 --size 64 [--device_target CPU]

Synthetic float32 NCHW batch already on the device, TrainOneStepCell(WithLossCell(net, CE)) with
nn.Momentum(0.9), BatchNorm in training mode; GRAPH mode by default. Reports the first call
(graph compile included) and the median / minimum of the timed steps after a warmup, as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import mindspore as ms
import numpy as np
from mindspore import nn

from ascend_port import registry, runtime
from ascend_port.losses import SmoothedCrossEntropy


def bench(
    model: str,
    *,
    batch: int,
    size: int,
    num_classes: int = 1000,
    warmup: int = 3,
    iters: int = 20,
) -> dict:
    """{'first_call_s', 'step_ms_median', 'step_ms_min', ...} for one train step (setup done)."""
    net = registry.create(model, num_classes=num_classes)
    net.set_train(True)
    opt = nn.Momentum(net.trainable_params(), learning_rate=0.01, momentum=0.9)
    step = nn.TrainOneStepCell(nn.WithLossCell(net, SmoothedCrossEntropy(num_classes)), opt)
    step.set_train(True)
    rng = np.random.default_rng(0)
    x = ms.Tensor(rng.standard_normal((batch, 3, size, size), dtype=np.float32))
    y = ms.Tensor(rng.integers(0, num_classes, (batch,)).astype(np.int32))
    start = time.perf_counter()
    step(x, y).asnumpy()  # .asnumpy() waits for the device
    first = time.perf_counter() - start
    for _ in range(warmup):
        step(x, y).asnumpy()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step(x, y).asnumpy()
        times.append(time.perf_counter() - start)
    return {
        "model": model,
        "batch": batch,
        "size": size,
        "first_call_s": round(first, 2),
        "step_ms_median": round(1000 * statistics.median(times), 1),
        "step_ms_min": round(1000 * min(times), 1),
        "iters": iters,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m ascend_port.bench", description=__doc__)
    parser.add_argument("--model", required=True, choices=registry.names())
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--num_classes", type=int, default=1000)
    parser.add_argument("--iters", type=int, default=20)
    parser.add_argument("--device_target", default="CPU", choices=["CPU", "GPU", "Ascend"])
    parser.add_argument("--mode", default="graph", choices=["graph", "pynative"])
    args = parser.parse_args(argv)
    runtime.setup(args.device_target, args.mode)
    result = bench(
        args.model,
        batch=args.batch,
        size=args.size,
        num_classes=args.num_classes,
        iters=args.iters,
    )
    print(json.dumps({**result, "device_target": args.device_target, "mode": args.mode}))


if __name__ == "__main__":
    main()

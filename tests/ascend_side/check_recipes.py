"""The MindSpore half of tests/test_recipes_train.py, run by HHL_ASCEND_PYTHON.

    python tests/ascend_side/check_recipes.py WHAT CASES.json OUT [WHAT CASES.json OUT ...]

WHAT: mixup (OUT.npz); decay, loss_scale, train_steps, ema or loss_scale_step (OUT.json).

Mixes the test batch of tests/test_recipes_train.py through ascend_port.mixup.BatchMixup inside
a real mindspore.dataset pipeline (per_batch_map of Dataset.batch) and saves the mixed images
(as NHWC, for comparison with the JAX side) and soft targets per case.
"""

from __future__ import annotations

import json
import os
import sys

import mindspore.dataset as msds
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ascend_port.mixup import BatchMixup  # noqa: E402
from configs import base  # noqa: E402
from train_lib.recipes import mixup as rule  # noqa: E402


def mixup_cases(cases: dict, out: str) -> None:
    saved = {}
    for name, case in cases.items():
        images = np.asarray(case["images"], np.float32).transpose(0, 3, 1, 2)  # NHWC -> NCHW
        labels = np.asarray(case["labels"], np.int32)
        spec = rule.MixupSpec(**case["spec"])
        ds = msds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False)
        mixer = BatchMixup(spec, case["num_classes"], case["smoothing"], seed=case["seed"])
        ds = ds.batch(len(images), per_batch_map=mixer, input_columns=["image", "label"])
        row = next(ds.create_dict_iterator(output_numpy=True, num_epochs=1))
        saved[f"{name}/images"] = row["image"].transpose(0, 2, 3, 1)
        saved[f"{name}/targets"] = row["label"]
    np.savez(out, **saved)


def decay_flags(cases: dict, out: str) -> None:
    """{model: {canonical name: decayed}} from ascend_port.optim.decays over each cell."""
    from ascend_port import bridge, optim, registry

    result = {}
    for name in cases["models"]:
        cell = registry.create(name, num_classes=10)
        names = bridge.ms_to_canonical_names([p.name for p in cell.get_parameters()])
        params = cell.trainable_params()
        flags = optim.decays(params, False, registry.info(name).family)
        result[name] = {names[p.name]: f for p, f in zip(params, flags, strict=True)}
    with open(out, "w") as f:
        json.dump(result, f)


def loss_scale(cases: dict, out: str) -> None:
    """Which manager ascend_port.train builds per ascend.loss_scale_mode, and what it does on an
    overflow (MindSpore's own update rule, with our settings)."""
    from mindspore import Tensor

    from ascend_port import train
    from configs import base

    result = {}
    for mode in ("dynamic", "fixed"):
        config = base.get_config()
        config.ascend.loss_scale_mode = mode
        manager = train._loss_scale_manager(config, 1024.0)
        before = manager.get_loss_scale()
        manager.update_loss_scale(Tensor(True))  # an overflowing step
        result[mode] = {
            "type": type(manager).__name__,
            "before": before,
            "after": manager.get_loss_scale(),
            "drops_update": manager.get_drop_overflow_update(),
        }
    with open(out, "w") as f:
        json.dump(result, f)


def _toy_cell(weights: dict):
    """The JAX side's toy (tests/test_recipes_train.py::_Toy): conv 3x3 SAME + ReLU + mean +
    dense, no BatchNorm, with its weights (Flax layouts in `weights`)."""
    import mindspore as ms
    from mindspore import nn

    class Toy(nn.Cell):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 3, pad_mode="same", has_bias=True)
            self.fc = nn.Dense(4, 5)

        def construct(self, x):
            return self.fc(ms.ops.relu(self.conv(x)).mean((2, 3)))

    cell = Toy()
    values = {
        "conv.weight": np.asarray(weights["conv.kernel"], np.float32).transpose(3, 2, 0, 1),
        "conv.bias": np.asarray(weights["conv.bias"], np.float32),
        "fc.weight": np.asarray(weights["fc.kernel"], np.float32).T,
        "fc.bias": np.asarray(weights["fc.bias"], np.float32),
    }
    for p in cell.get_parameters():
        p.set_data(ms.Tensor(np.ascontiguousarray(values[p.name])))
    return cell


def train_steps(cases: dict, out: str) -> None:
    """Two optimizer steps (ascend_port.optim's momentum SGD, lr 0.5) of the toy through
    ascend_port.train_step per case {accum_steps, clip_norm}; the weights after them."""
    import mindspore as ms

    from ascend_port import optim, train_step
    from ascend_port.losses import SmoothedCrossEntropy

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    mean, std = np.float32(0.5), np.float32(0.25)
    batches = []
    for batch in cases["batches"]:
        x = np.asarray(batch["image"], np.uint8).astype(np.float32) / np.float32(255.0)
        x = ((x - mean) / std).transpose(0, 3, 1, 2)
        batches.append((ms.Tensor(x), ms.Tensor(np.asarray(batch["label"], np.int32))))
    result = {}
    for name, case in cases["runs"].items():
        config = base.get_config()
        config.optim.name, config.optim.momentum, config.optim.nesterov = "sgd", 0.9, False
        config.optim.weight_decay = 0.0
        net = _toy_cell(cases["weights"])
        opt = optim.build(config, net.trainable_params(), np.full(4, 0.5, np.float32))
        step = train_step.build(
            net,
            SmoothedCrossEntropy(5, 0.1),
            opt,
            accum_steps=case["accum_steps"],
            clip_norm=case["clip_norm"],
        )
        losses = [float(step(*batch).asnumpy()) for batch in batches]
        result[name] = {
            "losses": losses,
            **{p.name: p.asnumpy().tolist() for p in net.get_parameters()},
        }
    with open(out, "w") as f:
        json.dump(result, f)


def ema(cases: dict, out: str) -> None:
    """train.ema_decay on a constant-gradient toy with a BatchNorm: the EMA of the weight after
    N SGD steps, the BatchNorm statistics seen after every step, the EMA of those, and the same
    after a save / strict load into a fresh cell (and one more step on both)."""
    import mindspore as ms
    from mindspore import Parameter, Tensor, nn

    from ascend_port import train_step
    from ascend_port import weights as msw
    from train_lib.recipes import ema as ema_rule

    ms.set_device("CPU")
    ms.set_context(mode=ms.GRAPH_MODE)
    g = Tensor(np.asarray(cases["g"], np.float32))

    class ConstantGradient(nn.Cell):
        """loss = <w, g> (+ 0 * a BatchNorm's output, so its statistics move every step)."""

        def __init__(self):
            super().__init__()
            self.w = Parameter(Tensor(np.asarray(cases["w0"], np.float32)), name="w")
            self.bn = nn.BatchNorm1d(2, momentum=0.9)

        def construct(self, x, y):
            return (self.w * g).sum() + 0.0 * self.bn(x).sum() + 0.0 * y.sum()

    def build(decays):
        net = ConstantGradient()
        opt = nn.Momentum(net.trainable_params(), cases["lr"], 0.0)
        return net, train_step.build(net, None, opt, ema_decays=decays)

    rng = np.random.default_rng(0)
    xs = [Tensor(rng.standard_normal((4, 2)).astype(np.float32)) for _ in range(cases["n"] + 1)]
    y = Tensor(np.zeros(4, np.float32))
    result = {}
    for warmup in (False, True):
        decays = ema_rule.decays(cases["n"] + 1, cases["decay"], warmup)
        net, step = build(decays)
        stats = []
        for x in xs[: cases["n"]]:
            step(x, y)
            stats.append(net.bn.moving_mean.asnumpy().tolist())
        averaged = train_step.ema_weights(step)
        key = "warmup" if warmup else "constant"
        result[key] = {
            "decays": decays.tolist(),
            "w": net.w.asnumpy().tolist(),
            "ema_w": averaged["w"].tolist(),
            "stats": stats,
            "ema_mean": averaged["bn.moving_mean"].tolist(),
            "ema_names": sorted(averaged),
        }
        if warmup:
            continue
        path = os.path.join(os.path.dirname(out), "ema.ckpt")
        ms.save_checkpoint(step, path)
        fresh_net, fresh = build(decays)
        not_loaded, _ = ms.load_param_into_net(fresh, ms.load_checkpoint(path), strict_load=True)
        restored = train_step.ema_weights(fresh)
        arrays, _ = msw.read_ckpt(path)
        result["restore"] = {
            "not_loaded": not_loaded,
            "equal": all(np.array_equal(restored[k], averaged[k]) for k in averaged),
            "from_file_equal": all(
                np.array_equal(v, averaged[k]) for k, v in msw.ema_entries(arrays).items()
            ),
        }
        step(xs[-1], y)
        fresh(xs[-1], y)
        after, fresh_after = train_step.ema_weights(step), train_step.ema_weights(fresh)
        result["restore"]["continues_equal"] = all(
            np.array_equal(after[k], fresh_after[k]) for k in after
        )
        try:
            msw.ema_entries({"w": np.zeros(3)}, source="no-ema.ckpt")
            result["no_ema_error"] = None
        except Exception as e:  # noqa: BLE001
            result["no_ema_error"] = f"{type(e).__name__}: {e}"
    with open(out, "w") as f:
        json.dump(result, f)


def loss_scale_step(cases: dict, out: str) -> None:
    """ascend_port.train_step.LossScaleTrainStep with a dynamic scale, 2 micro-batches, clipping
    and EMA, on CPU in PyNative mode. MindSpore's overflow check reads the NPU/GPU float status,
    which CPU lacks, so it is replaced by an all-finite test of the gradients; the rest (skip,
    scale update, clip, EMA) is ours and MindSpore's. A scale of 3e38 overflows (inputs of
    ~100 make gradients of ~100 before scaling)."""
    import mindspore as ms
    from mindspore import Tensor, nn, ops

    from ascend_port import train_step

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)

    class CpuOverflowCheck(train_step.LossScaleTrainStep):
        def get_overflow_status(self, status, compute_output):
            finite = self.hyper_map(lambda g: ops.isfinite(g).all(), compute_output)
            return ops.logical_not(ops.stack(finite).all())

    rng = np.random.default_rng(0)
    x = Tensor(100 * rng.standard_normal((8, 3)).astype(np.float32))
    y = Tensor(np.array([0, 1] * 4, np.int32))
    net = nn.Dense(3, 2)
    loss = nn.WithLossCell(net, nn.SoftmaxCrossEntropyWithLogits(sparse=True, reduction="mean"))
    opt = nn.Momentum(net.trainable_params(), 0.1, 0.9)
    result = {}
    for name, scale in (("overflow", 3e38), ("finite", 1024.0)):
        before = net.weight.asnumpy().copy()
        step = CpuOverflowCheck(
            loss,
            opt,
            nn.DynamicLossScaleUpdateCell(scale, 2, 1000),
            net=net,
            accum_steps=2,
            clip_norm=1.0,
            ema_decays=np.full(4, 0.5, np.float32),
        )
        _, overflow, scale_after = step(x, y)
        average = train_step.ema_weights(step)["weight"]
        after = net.weight.asnumpy()
        result[name] = {
            "overflow": bool(overflow.asnumpy()),
            "scale_after": float(scale_after.asnumpy()),
            "weights_moved": float(np.abs(after - before).max()),
            "ema_is_midpoint": bool(np.allclose(average, (before + after) / 2, atol=1e-7)),
            "ema_is_before": bool(np.array_equal(average, before)),
        }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    checks = {
        "mixup": mixup_cases,
        "decay": decay_flags,
        "loss_scale": loss_scale,
        "train_steps": train_steps,
        "ema": ema,
        "loss_scale_step": loss_scale_step,
    }
    args = sys.argv[1:]  # WHAT CASES OUT, repeated: several checks in one interpreter start
    for what, cases_path, out in zip(args[0::3], args[1::3], args[2::3], strict=True):
        with open(cases_path) as f:
            checks[what](json.load(f), out)

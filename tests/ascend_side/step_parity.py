"""The MindSpore side of tests/test_step_parity.py, run by HHL_ASCEND_PYTHON, all cases in one
process.

    python -m tests.ascend_side.step_parity DIR CASE_ID...

Our cells (ascend_port) with our MindSpore optimizers (ascend_port.optim.build from the recipe's
config) and loss, one TrainOneStepCell step in float32 (PyNative, CPU) on DIR/<model>.batch.npz's
`input` from DIR/<model>.safetensors. Writes DIR/<case id>.ms32.npz with the names of
tests/step_parity_jax.py, or DIR/<case id>.ms32.error.txt.
"""

from __future__ import annotations

import sys
import traceback
from pathlib import Path

import mindspore as ms
import numpy as np
from mindspore import Tensor, nn

import ascend_port
from ascend_port import bridge, optim
from ascend_port import weights as msw
from ascend_port.losses import SmoothedCrossEntropy
from tests import step_cases

# optimizer attribute holding a state -> field name (RMSProp's moment holds lr * g / rms)
_STATE = {
    "sgd": {"moments": "momentum"},
    "rmsprop": {"ms": "mean_square", "moment": "rms_momentum"},
    "adamw": {"moments1": "adam_m", "moments2": "adam_v"},
}


def run(case: step_cases.Case, d: Path) -> dict[str, np.ndarray]:
    c = step_cases.config(case)
    lr = step_cases.lr(case)
    net = ascend_port.create(
        case.model, num_classes=step_cases.NUM_CLASSES, **step_cases.model_kwargs(c)
    )
    ascend_port.load_weights(net, d / f"{case.model}.safetensors")
    net.set_train(True)
    params = net.trainable_params()
    opt = optim.build(c, params, np.full(1, lr, np.float32))
    loss_fn = SmoothedCrossEntropy(
        step_cases.NUM_CLASSES, c.train.label_smoothing, c.train.label_smoothing_mode
    )
    step = nn.TrainOneStepCell(nn.WithLossCell(net, loss_fn), opt)
    step.set_train(True)
    batch = np.load(d / f"{case.model}.batch.npz")
    x = Tensor(np.ascontiguousarray(batch["input"].transpose(0, 3, 1, 2)))
    loss = step(x, Tensor(batch["label"].astype(np.int32)))
    out = {"loss": np.asarray(loss.asnumpy())}
    for key, value in msw.canonical_flat(net).items():
        kind = "stat" if key.rpartition(".")[2] in ("mean", "var") else "param"
        out[f"{kind}:{key}"] = value
    ms_flat = msw.cell_flat(net)
    names = [p.name for p in params]
    for attr, field in _STATE[c.optim.name].items():
        state = dict(zip(names, (s.asnumpy() for s in getattr(opt, attr)), strict=True))
        flat = bridge.ms_to_canonical({k: state.get(k, v) for k, v in ms_flat.items()})
        canonical_names = bridge.ms_to_canonical_names(ms_flat)
        for name in names:
            value = flat[canonical_names[name]]
            out[f"opt:{field}:{canonical_names[name]}"] = value
    return out


def main(argv: list[str]) -> None:
    ms.set_context(mode=ms.PYNATIVE_MODE, device_target="CPU")
    d = Path(argv[0])
    for case_id in argv[1:]:
        try:
            np.savez(d / f"{case_id}.ms32.npz", **run(step_cases.BY_ID[case_id], d))
        except Exception:  # reported by the JAX-side test, which prints it
            (d / f"{case_id}.ms32.error.txt").write_text(traceback.format_exc())


if __name__ == "__main__":
    main(sys.argv[1:])

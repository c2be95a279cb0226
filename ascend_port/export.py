"""Export a checkpoint to MindIR or ONNX for inference.

    python -m ascend_port.export --config configs/X.py --ckpt FILE --format MINDIR|ONNX --output F

Each export builds a fresh cell: MindSpore 2.10 fails exporting one cell instance twice. The
input is NCHW float32 (batch_size, 3, S, S), S = --image_size or data.image_size, normalised as in
training; shapes are fixed at export time. MindSpore 2.10's ONNX exporter cannot write Erf,
so exact GELUs (official HLG) are exported with a polynomial erf (error <= 1.5e-7).
"""

from __future__ import annotations

import logging
import os

import mindspore as ms
import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags

from ascend_port import registry, runtime
from ascend_port import weights as msw
from ascend_port.cells import layers

log = logging.getLogger("ascend_port.export")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file (configs/*.py)", lock_config=True
)
_CKPT = flags.DEFINE_string("ckpt", None, "canonical .safetensors or MindSpore .ckpt")
_FORMAT = flags.DEFINE_enum("format", "MINDIR", ["MINDIR", "ONNX"], "output format")
_OUTPUT = flags.DEFINE_string("output", None, "output file (.mindir / .onnx)")
_TARGET = flags.DEFINE_string(
    "device_target", "CPU", "Ascend | GPU | CPU (a MindIR made on CPU runs on Ascend)"
)
_BATCH = flags.DEFINE_integer("batch_size", 1, "batch size baked into the exported graph")
_SIZE = flags.DEFINE_integer("image_size", 0, "input size (0 = data.image_size)")

_SUFFIX = {"MINDIR": ".mindir", "ONNX": ".onnx"}


def export(
    config: ConfigDict,
    ckpt: str,
    fmt: str,
    output: str,
    *,
    batch_size: int = 1,
    image_size: int = 0,
) -> str:
    """Writes the exported model; returns its path (MindSpore adds the suffix if it is missing)."""
    net = registry.create(config.model.name, num_classes=config.model.num_classes)  # fresh cell
    msw.load_weights(net, ckpt)
    net.set_train(False)
    size = image_size or config.data.image_size
    x = ms.Tensor(np.zeros((batch_size, 3, size, size), np.float32))
    stem, suffix = os.path.splitext(output)
    base = stem if suffix.lower() == _SUFFIX[fmt] else output
    os.makedirs(os.path.dirname(os.path.abspath(base)), exist_ok=True)
    if fmt == "ONNX":
        from mindspore import onnx

        for _, cell in net.cells_and_names():
            if isinstance(cell, layers.ExactGELU):  # the exporter cannot write Erf
                cell.for_onnx = True
        onnx.export(net, x, file_name=base, input_names=["images"], output_names=["logits"])
    else:
        ms.export(net, x, file_name=base, file_format="MINDIR")
    path = base + _SUFFIX[fmt]
    log.info("wrote %s", path)
    return path


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    runtime.setup(runtime.device_target(_TARGET.value, config), "graph")
    export(
        config,
        _CKPT.value,
        _FORMAT.value,
        _OUTPUT.value,
        batch_size=_BATCH.value,
        image_size=_SIZE.value,
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "ckpt", "output"])
    app.run(main)

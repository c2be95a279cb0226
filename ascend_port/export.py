"""Export weights for inference: canonical .safetensors plus MindIR or ONNX.

    python -m ascend_port --mode=export --config configs/X.py --workdir W \
        [--config.init_from=FILE] [--config.ascend.export_format=ONNX]

Takes --config.init_from or the workdir's latest checkpoint (its EMA weights with
--config.export_ema) and writes
W/export/<model>.safetensors (the canonical file main.py reads) and W/export/<model>.mindir
(or .onnx, config.ascend.export_format). `python -m ascend_port.export` is the same command.

Each export builds a fresh cell: MindSpore 2.10 fails exporting one cell instance twice. The
input is NCHW float32 (ascend.export_batch_size, 3, S, S), S = data.image_size, normalised as in
training; shapes are fixed at export time. MindSpore 2.10's ONNX exporter cannot write Erf,
so exact GELUs (official HLG) are exported with a polynomial erf (error <= 1.5e-7).
"""

from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from absl import logging
from ml_collections import ConfigDict

from ascend_port import eval as eval_lib
from ascend_port import registry
from ascend_port import weights as msw
from ascend_port import workdir as wd
from ascend_port.cells import layers
from ascend_port.errors import UserError
from models import canonical

_SUFFIX = {"MINDIR": ".mindir", "ONNX": ".onnx"}


def export_file(
    config: ConfigDict,
    weights: str,
    fmt: str,
    output: str,
    *,
    batch_size: int = 1,
    image_size: int = 0,
) -> str:
    """Writes `weights` as a MindIR/ONNX graph; returns its path (the suffix is added if
    missing)."""
    net = registry.create(config.model.name, num_classes=config.model.num_classes)  # fresh cell
    msw.load_weights(net, weights)
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
    logging.info("wrote %s", path)
    return path


def export(config: ConfigDict, workdir: str) -> list[str]:
    """W/export/<model>.safetensors and .mindir/.onnx from init_from or the latest checkpoint."""
    wd.check(workdir, config.model.name, writing=True)
    weights = eval_lib.weights_to_evaluate(config, workdir)
    name, num_classes = config.model.name, config.model.num_classes
    net = registry.create(name, num_classes=num_classes)
    # strict: refuses weights of another model before writing; export_ema: the weight average
    eval_lib.load_evaluated(config, net, weights)
    flat = msw.canonical_flat(net)
    bad = sorted(k for k, v in flat.items() if not np.isfinite(v).all())
    if bad:
        raise UserError(
            f"{weights} holds non-finite values ({len(bad)} arrays, e.g. {bad[0]}); "
            "nothing exported"
        )
    out = os.path.join(workdir, "export", name)
    canonical.write(flat, out + ".safetensors", model=name, num_classes=num_classes)
    graph = export_file(
        config,
        out + ".safetensors",
        config.ascend.export_format,
        out,
        batch_size=config.ascend.export_batch_size,
    )
    return [out + ".safetensors", graph]


if __name__ == "__main__":  # python -m ascend_port.export: the export mode of python -m ascend_port
    from ascend_port import cli

    cli.run(default_mode="export")

"""Evaluate a checkpoint with MindSpore: top-1 / top-5 over every image of the split exactly once.

    python -m ascend_port.eval --config configs/X.py --ckpt FILE --device_target CPU|GPU|Ascend \
        --data /path/imagenet   # or --data digits

FILE is a canonical .safetensors or a MindSpore .ckpt (a training checkpoint's optimizer state is
ignored). Runs on one device; the last batch is kept, not padded or dropped.
"""

from __future__ import annotations

import json
import logging

import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags

from ascend_port import data, registry, runtime
from ascend_port import weights as msw

log = logging.getLogger("ascend_port.eval")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file (configs/*.py)", lock_config=True
)
_CKPT = flags.DEFINE_string("ckpt", None, "canonical .safetensors or MindSpore .ckpt")
_DATA = flags.DEFINE_string(
    "data", None, "ImageFolder root (train/, val/), folder:<path> or digits"
)
_TARGET = flags.DEFINE_string(
    "device_target", "", "Ascend | GPU | CPU ('' = config.ascend.device_target)"
)
_MODE = flags.DEFINE_enum("mode", "graph", ["graph", "pynative"], "MindSpore execution mode")
_BATCH = flags.DEFINE_integer("batch_size", 0, "0 = train.eval_batch_size or train.batch_size")
_OUTPUT = flags.DEFINE_string("output_json", "", "also write the result here")


def evaluate(config: ConfigDict, ckpt: str, data_arg: str, *, batch_size: int = 0) -> dict:
    """{'top1', 'top5', 'count', 'model', 'ckpt'}; asserts every image was counted once."""
    net = registry.create(config.model.name, num_classes=config.model.num_classes)
    msw.load_weights(net, ckpt)
    net.set_train(False)
    batch_size = batch_size or config.train.eval_batch_size or config.train.batch_size
    ds, expected = data.eval_dataset(config, data.resolve_root(data_arg), batch_size=batch_size)
    k = min(5, config.model.num_classes)
    seen = top1 = topk = 0
    for images, labels in ds.create_tuple_iterator(num_epochs=1):
        logits = net(images).asnumpy()
        labels = labels.asnumpy()
        ranked = np.argsort(-logits, axis=1)[:, :k]
        top1 += int((ranked[:, 0] == labels).sum())
        topk += int((ranked == labels[:, None]).any(axis=1).sum())
        seen += len(labels)
    if seen != expected:
        raise RuntimeError(f"evaluated {seen} images, the split has {expected}")
    return {
        "model": config.model.name,
        "ckpt": ckpt,
        "count": seen,
        "top1": top1 / max(seen, 1),
        "top5": topk / max(seen, 1),
    }


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    runtime.setup(runtime.device_target(_TARGET.value, config), _MODE.value)
    result = evaluate(config, _CKPT.value, _DATA.value, batch_size=_BATCH.value)
    log.info(
        "top-1 %.4f top-5 %.4f over %d images", result["top1"], result["top5"], result["count"]
    )
    print(json.dumps(result))
    if _OUTPUT.value:
        with open(_OUTPUT.value, "w") as f:
            json.dump(result, f)


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "ckpt", "data"])
    app.run(main)

"""MindSpore port: cells mirroring models/, the weight bridge, train/eval/export/convert CLIs.

    import ascend_port
    cell = ascend_port.create("hardnet68", num_classes=1000)   # eval mode, NCHW input
    ascend_port.load_weights(cell, "h68.safetensors")           # canonical file or MindSpore .ckpt

Attributes load lazily (PEP 562): `import ascend_port.bridge` (numpy only) and
`ascend_port.registry` must work in the JAX environment, which has no mindspore.
"""

from __future__ import annotations

import importlib
import os
from typing import Any

# MindSpore switches protobuf to its slow pure-python implementation when the variable is unset;
# upb reads big .ckpt files fast and is what TF needs if both ever share a process.
os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "upb")

_LAZY = {
    "create": ("ascend_port.registry", "create"),
    "names": ("ascend_port.registry", "names"),
    "info": ("ascend_port.registry", "info"),
    "load_weights": ("ascend_port.weights", "load_weights"),
    "bridge": ("ascend_port.bridge", None),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'ascend_port' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)

"""Model zoo: HarDNet, HRNet-cls and HLG in Flax NNX.

    import models
    model = models.create("hardnet68", num_classes=1000)
    models.names()                       # every registered variant
    models.info("hardnet68").top1        # published metadata
    models.weights.save(model, "h68.safetensors")
    model = models.from_torch("hardnet68", torch_state_dict)

Attributes load lazily (PEP 562) so that the numpy-only `models.layout` can be imported by the
MindSpore environment, which has no jax.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "create": ("models.registry", "create"),
    "names": ("models.registry", "names"),
    "info": ("models.registry", "info"),
    "VariantInfo": ("models.registry", "VariantInfo"),
    "from_torch": ("models.torch_import", "from_torch"),
    "load_torch_file": ("models.torch_import", "load_torch_file"),
    "weights": ("models.weights", None),
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name not in _LAZY:
        raise AttributeError(f"module 'models' has no attribute {name!r}")
    module_name, attr = _LAZY[name]
    module = importlib.import_module(module_name)
    return module if attr is None else getattr(module, attr)

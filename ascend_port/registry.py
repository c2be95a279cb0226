"""Which models have MindSpore cells; the metadata is models/variants.py's. Imports no mindspore.

Variant rows (mean/std, crop_pct, interpolation, default classes, published numbers) come from
the framework-free models/variants.py, the same table models.registry reads, so the two sides
cannot disagree. Add a family by adding its cell module (providing `build(name,
num_classes=..., drop_rate=...[, drop_path_rate=...])`) to CELL_MODULES.
"""

from __future__ import annotations

import importlib

from models import variants

CellInfo = variants.Variant  # what the MindSpore CLIs read about a variant

# family (models/variants.py) -> module with its cells
CELL_MODULES: dict[str, str] = {
    "hardnet": "ascend_port.cells.hardnet",
    "hrnet": "ascend_port.cells.hrnet",
    "hlg": "ascend_port.cells.hlg",
    "hlg_zoo": "ascend_port.cells.hlg_zoo",
}


def names(family: str | None = None) -> list[str]:
    """Variants that have a MindSpore cell, sorted."""
    return [n for n in variants.names(family) if variants.TABLE[n].family in CELL_MODULES]


def info(name: str) -> CellInfo:
    known = names()
    if name not in known:
        raise KeyError(f"unknown model {name!r} for the MindSpore port; known: {', '.join(known)}")
    return variants.TABLE[name]


def create(
    name: str,
    *,
    num_classes: int | None = None,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
):
    """Builds the cell for `name` in eval mode (call `set_train(True)` before training), with
    `variant` and `num_classes` attributes, like models.create. drop_path_rate goes only to
    families with stochastic depth (HLG); None keeps the variant's default."""
    variant = info(name)
    module = importlib.import_module(CELL_MODULES[variant.family])
    num_classes = variant.default_num_classes if num_classes is None else num_classes
    kwargs = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
    cell = module.build(name, num_classes=num_classes, drop_rate=drop_rate, **kwargs)
    cell.variant = name
    cell.set_train(False)
    return cell

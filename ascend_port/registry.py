"""Which models have MindSpore cells, and their preprocessing metadata; imports no mindspore.

Names equal models.names() for every family listed here, and the metadata equals models.info()
(both checked by tests/test_ascend_port.py); it is repeated because models.registry imports jax.
Add a family by adding one entry to FAMILIES and a module under ascend_port/cells/ that provides
`build(name, num_classes=..., drop_rate=...[, drop_path_rate=...])`. Variant names and metadata
come from the framework-free models/*_arch.py tables (the cell modules import mindspore).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class CellInfo:
    """Per-variant facts the MindSpore CLIs need (same fields as models.VariantInfo)."""

    name: str
    family: str
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_num_classes: int = 1000


def _arch_variants(module: str):
    """Lister of the variants in a framework-free models/<family>_arch.py CONFIGS table."""

    def lister() -> tuple[str, ...]:
        return tuple(importlib.import_module(module).CONFIGS)

    return lister


def _hlg_zoo_variants() -> tuple[str, ...]:
    from models.hlg_arch import ZOO_NAME

    return (ZOO_NAME,)


def _hlg_overrides() -> dict[str, dict[str, Any]]:
    from models.hlg_arch import CONFIGS

    return {name: {"interpolation": "bicubic"} for name in CONFIGS}  # the official recipe


def _hlg_zoo_overrides() -> dict[str, dict[str, Any]]:
    from models.hlg_arch import ZOO_NAME, ZOO_NUM_CLASSES

    return {ZOO_NAME: {"default_num_classes": ZOO_NUM_CLASSES}}  # the zoo's class_num


# family -> (cell module, variant lister, per-variant metadata overrides); the family names are
# models.registry's.
FAMILIES: dict[str, tuple[str, Any, Any]] = {
    "hardnet": ("ascend_port.cells.hardnet", _arch_variants("models.hardnet_arch"), dict),
    "hrnet": ("ascend_port.cells.hrnet", _arch_variants("models.hrnet_arch"), dict),
    "hlg": ("ascend_port.cells.hlg", _arch_variants("models.hlg_arch"), _hlg_overrides),
    "hlg_zoo": ("ascend_port.cells.hlg_zoo", _hlg_zoo_variants, _hlg_zoo_overrides),
}


def _table() -> dict[str, CellInfo]:
    table = {}
    for family, (_, lister, overrides) in FAMILIES.items():
        per_variant = overrides()
        for name in lister():
            table[name] = CellInfo(name=name, family=family, **per_variant.get(name, {}))
    return table


def names(family: str | None = None) -> list[str]:
    """Variants that have a MindSpore cell, sorted."""
    return sorted(n for n, i in _table().items() if family is None or i.family == family)


def info(name: str) -> CellInfo:
    table = _table()
    if name not in table:
        raise KeyError(
            f"unknown model {name!r} for the MindSpore port; known: {', '.join(sorted(table))}"
        )
    return table[name]


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
    module = importlib.import_module(FAMILIES[variant.family][0])
    num_classes = variant.default_num_classes if num_classes is None else num_classes
    kwargs = {} if drop_path_rate is None else {"drop_path_rate": drop_path_rate}
    cell = module.build(name, num_classes=num_classes, drop_rate=drop_rate, **kwargs)
    cell.variant = name
    cell.num_classes = num_classes
    cell.set_train(False)
    return cell

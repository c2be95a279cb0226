"""Which registered variants a set of weights fits: named in weight-mismatch errors.

Cells are built without initialising their parameters (mindspore.nn.utils.no_init_parameters:
HRNet-W64 in 3 s instead of 12), first the smallest of each family to pick the family by key
overlap, then that family's variants with the file's key count. Only error paths call this.
"""

from __future__ import annotations

from collections.abc import Mapping

from mindspore.nn.utils import no_init_parameters

from ascend_port import finetune, registry
from ascend_port import weights as msw


def _shapes(name: str) -> tuple[dict[str, tuple[int, ...]], set[str]]:
    with no_init_parameters():
        cell = registry.create(name)
    return msw.cell_shapes(cell), set(finetune.classifier_keys(cell))


def fitting(shapes: Mapping[str, tuple[int, ...]], exclude: str = "") -> list[str]:
    """Variants (other than `exclude`) whose MindSpore names and shapes equal `shapes`, the
    classifier's width aside."""
    keys = set(shapes)
    overlap = {}
    for family in sorted({registry.info(n).family for n in registry.names()}):
        smallest = registry.names(family)[0]
        overlap[family] = len(keys & set(_shapes(smallest)[0])) / max(len(keys), 1)
    family = max(overlap, key=overlap.get)
    if overlap[family] < 0.5:
        return []
    found = []
    for name in registry.names(family):
        if name == exclude:
            continue
        theirs, head = _shapes(name)
        if set(theirs) != keys:
            continue
        if all(tuple(shapes[k]) == s or k in head for k, s in theirs.items()):
            found.append(name)
    return found


def hint(shapes: Mapping[str, tuple[int, ...]], exclude: str) -> str:
    """'; they fit X (pass --model X)' or ''."""
    names = fitting(shapes, exclude)
    if not names:
        return ""
    return f"; these weights fit {', '.join(names)} (pass --model {names[0]})"

"""Every variant's metadata, framework-free: preprocessing, published numbers, our build's count.

The one table both environments read: models.registry (Flax) adds a builder to each row and
ascend_port.registry (MindSpore) a cell module, so mean/std, crop_pct, interpolation, default
class counts and published numbers cannot drift between them. Imports neither jax nor mindspore.

Published numbers are copied as the authors print them (`published_params` is their text, e.g.
"11M"); `num_params` is what our build has. Where the two disagree at the published precision,
`params_note` says why in one line (tests/test_models.py checks that rule).
"""

from __future__ import annotations

import dataclasses
import re

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclasses.dataclass(frozen=True)
class Variant:
    """What a user needs to know about a variant besides its weights."""

    name: str
    family: str  # the models/<family>.py module (and ascend_port/cells/<family>.py)
    num_params: int  # our build's trainable parameters at 1000 classes (BatchNorm stats excluded)
    published_params: str | None  # the count as published ("3.5M"); None: nothing published
    top1: float | None  # published ImageNet-1k top-1, percent; None: nothing published
    reference: str  # independent implementation the logits are checked against
    params_note: str | None = None  # why num_params differs from published_params, if it does
    input_size: int = 224
    crop_pct: float = 0.875
    interpolation: str = "bilinear"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    default_num_classes: int = 1000
    test_input_size: int = 64  # smallest cheap input for the contract test
    input_sizes: str = "any"  # "any", or "fixed" (position tables built for input_size only)


def published_params_value(text: str) -> tuple[float, int]:
    """("11M" -> (11e6, 0), "3.5M" -> (3.5e6, 1)): the value and its decimals in millions."""
    match = re.fullmatch(r"(\d+)(?:\.(\d+))?M", text)
    if not match:
        raise ValueError(f"published parameter count {text!r} is not written as '<millions>M'")
    decimals = len(match[2] or "")
    return float(text[:-1]) * 1e6, decimals


def matches_published(variant: Variant) -> bool:
    """Our count, rounded to the published precision, equals the published count."""
    if variant.published_params is None:
        return False
    value, decimals = published_params_value(variant.published_params)
    return round(variant.num_params / 1e6, decimals) == round(value / 1e6, decimals)


_HARDNET_REF = "PingoLH/Pytorch-HarDNet hardnet.py; pytorchcv hardnet (parity-tested)"
_HRNET_REF = "timm hrnet (parity-tested)"
_HLG_REF = (
    "fudan-zvg/SETR hlg-classification/models/hlg.py, repaired so that it builds "
    "(parity-tested on random weights)"
)
_HLG_ML_NOTE = (
    "the released HLG file does not build; the repaired build that gives the published "
    "Tiny/Small sizes (11M/24M) gives {ours} here, and no build in the official sources gives {pub}"
)
_HLG = dict(
    family="hlg",
    reference=_HLG_REF,
    interpolation="bicubic",
    test_input_size=224,
    input_sizes="fixed",
)


def _hlg_unreproduced(name: str, num_params: int, published_params: str, top1: float) -> Variant:
    """An HLG size whose published count no build in the official sources gives."""
    note = _HLG_ML_NOTE.format(ours=f"{num_params / 1e6:.1f}M", pub=published_params)
    return Variant(
        name,
        num_params=num_params,
        published_params=published_params,
        top1=top1,
        params_note=note,
        **_HLG,
    )


# Counts: HarDNet and HRNet equal the official code's (measured); README/paper text alongside.
TABLE: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("hardnet39ds", "hardnet", 3_488_228, "3.5M", 72.1, _HARDNET_REF),
        Variant("hardnet68ds", "hardnet", 4_180_602, "4.2M", 74.3, _HARDNET_REF),
        Variant("hardnet68", "hardnet", 17_565_348, "17.6M", 76.5, _HARDNET_REF),
        Variant("hardnet85", "hardnet", 36_670_212, "36.7M", 78.0, _HARDNET_REF),
        Variant("hrnet_w18_small", "hrnet", 13_187_464, "13.2M", 72.3, _HRNET_REF),
        Variant("hrnet_w18_small_v2", "hrnet", 15_597_464, "15.6M", 75.1, _HRNET_REF),
        Variant("hrnet_w18", "hrnet", 21_299_004, "21.3M", 76.8, _HRNET_REF),
        Variant("hrnet_w30", "hrnet", 37_712_220, "37.7M", 78.2, _HRNET_REF),
        Variant("hrnet_w32", "hrnet", 41_232_680, "41.2M", 78.5, _HRNET_REF),
        Variant("hrnet_w40", "hrnet", 57_557_160, "57.6M", 78.9, _HRNET_REF),
        Variant("hrnet_w44", "hrnet", 67_064_984, "67.1M", 78.9, _HRNET_REF),
        Variant("hrnet_w48", "hrnet", 77_469_864, "77.5M", 79.3, _HRNET_REF),
        Variant("hrnet_w64", "hrnet", 128_059_944, "128.1M", 79.5, _HRNET_REF),
        Variant(
            "hlg_mobile",
            params_note="the official repository publishes no mobile count or result",
            num_params=4_140_904,
            published_params=None,
            top1=None,
            **_HLG,
        ),
        Variant("hlg_tiny", num_params=11_035_824, published_params="11M", top1=81.1, **_HLG),
        Variant(
            "hlg_tiny_dwconv",
            num_params=11_131_824,
            published_params=None,
            top1=None,
            params_note="the official file defines this variant but publishes no count or result",
            **_HLG,
        ),
        Variant("hlg_small", num_params=24_273_004, published_params="24M", top1=82.3, **_HLG),
        _hlg_unreproduced("hlg_medium", 39_978_412, "43M", 83.6),
        _hlg_unreproduced("hlg_large", 70_455_992, "84M", 84.1),
        Variant(
            "hlg_mobile_zoo",
            "hlg_zoo",
            6_767_816,
            "6.0M",
            75.61,
            "mindspore-ai/models research/cv/hlg/src/hlg.py (parity-tested on random weights)",
            params_note="we count the unused patch-embed branches and stage-4 modules that the "
            "zoo's checkpoints store (6.15M are used); the zoo's 6.0M figure is not derived",
            default_num_classes=1001,
            test_input_size=224,
            input_sizes="fixed",
        ),
    )
}


def names(family: str | None = None) -> list[str]:
    """Variant names, optionally of one family, sorted."""
    return sorted(n for n, v in TABLE.items() if family is None or v.family == family)


def get(name: str) -> Variant:
    if name not in TABLE:
        raise KeyError(f"unknown model {name!r}; known: {', '.join(names())}")
    return TABLE[name]

"""The augmentation definitions both sides follow, once, framework-free (numpy only).

Everything here is timm's (timm.data.auto_augment, timm.data.random_erasing), which the HLG paper
recipe (Swin/DeiT code) trains with: the AutoAugment ImageNet policy as timm's `original`
(the AutoAugment paper's table, magnitudes on timm's 0..10 scale), RandAugment from timm's config
string, and random erasing's rectangle rule. The TensorFlow ops (input_pipeline/augment.py) and the
PIL ops of the MindSpore side (ascend_port/augment.py) implement the per-op image functions; the
tables, the string syntax and the magnitude -> argument rules live only here.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any

LEVEL_DENOM = 10.0  # timm's magnitude scale: M10 is the strongest setting
TRANSLATE_PCT = 0.45  # TranslateXRel/YRel: fraction of the image size at M10
FILL_MEAN = (0.485, 0.456, 0.406)  # timm fills with round(255 * IMAGENET_DEFAULT_MEAN)
GEOMETRIC = ("Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel")

# AutoAugment's ImageNet policy, timm `original`: 25 sub-policies of (op, probability, magnitude).
ORIGINAL_POLICY: tuple[tuple[tuple[str, float, int], ...], ...] = (
    (("PosterizeOriginal", 0.4, 8), ("Rotate", 0.6, 9)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
    (("PosterizeOriginal", 0.6, 7), ("PosterizeOriginal", 0.6, 6)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Equalize", 0.4, 4), ("Rotate", 0.8, 8)),
    (("Solarize", 0.6, 3), ("Equalize", 0.6, 7)),
    (("PosterizeOriginal", 0.8, 5), ("Equalize", 1.0, 2)),
    (("Rotate", 0.2, 3), ("Solarize", 0.6, 8)),
    (("Equalize", 0.6, 8), ("PosterizeOriginal", 0.4, 6)),
    (("Rotate", 0.8, 8), ("Color", 0.4, 0)),
    (("Rotate", 0.4, 9), ("Equalize", 0.6, 2)),
    (("Equalize", 0.0, 7), ("Equalize", 0.8, 8)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Rotate", 0.8, 8), ("Color", 1.0, 2)),
    (("Color", 0.8, 8), ("Solarize", 0.8, 7)),
    (("Sharpness", 0.4, 7), ("Invert", 0.6, 8)),
    (("ShearX", 0.6, 5), ("Equalize", 1.0, 9)),
    (("Color", 0.4, 0), ("Equalize", 0.6, 3)),
    (("Equalize", 0.4, 7), ("Solarize", 0.2, 4)),
    (("Solarize", 0.6, 5), ("AutoContrast", 0.6, 5)),
    (("Invert", 0.6, 4), ("Equalize", 1.0, 8)),
    (("Color", 0.6, 4), ("Contrast", 1.0, 8)),
    (("Equalize", 0.8, 8), ("Equalize", 0.6, 3)),
)

RAND_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "Posterize", "Solarize", "SolarizeAdd",
    "Color", "Contrast", "Brightness", "Sharpness", "ShearX", "ShearY", "TranslateXRel",
    "TranslateYRel",
)  # fmt: skip
RAND_INCREASING_TRANSFORMS = (
    "AutoContrast", "Equalize", "Invert", "Rotate", "PosterizeIncreasing", "SolarizeIncreasing",
    "SolarizeAdd", "ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
    "SharpnessIncreasing", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel",
)  # fmt: skip

# The image function each op name calls (several names share one with different level rules).
IMAGE_OP = {
    "AutoContrast": "auto_contrast", "Equalize": "equalize", "Invert": "invert",
    "Rotate": "rotate", "Posterize": "posterize", "PosterizeIncreasing": "posterize",
    "PosterizeOriginal": "posterize", "Solarize": "solarize", "SolarizeIncreasing": "solarize",
    "SolarizeAdd": "solarize_add", "Color": "color", "ColorIncreasing": "color",
    "Contrast": "contrast", "ContrastIncreasing": "contrast", "Brightness": "brightness",
    "BrightnessIncreasing": "brightness", "Sharpness": "sharpness",
    "SharpnessIncreasing": "sharpness", "ShearX": "shear_x", "ShearY": "shear_y",
    "TranslateXRel": "translate_x", "TranslateYRel": "translate_y",
}  # fmt: skip
# Ops whose argument gets a random sign (timm's _randomly_negate, probability 1/2).
SIGNED = frozenset(
    {"Rotate", "ShearX", "ShearY", "TranslateXRel", "TranslateYRel", "ColorIncreasing",
     "ContrastIncreasing", "BrightnessIncreasing", "SharpnessIncreasing"}
)  # fmt: skip


def level_to_arg(name: str, level: Any, sign: Any, xp: Any) -> Any:
    """timm's LEVEL_TO_ARG for op `name` at magnitude `level` (0..10), with the random `sign`
    (+1/-1; ignored by unsigned ops) already drawn. `xp` supplies floor/minimum/maximum so the
    same rule runs on Python floats (numpy) and on TensorFlow tensors. None for argument-free ops.
    Translations return the fraction of the image size; the image op multiplies."""
    frac = level / LEVEL_DENOM
    if name in ("AutoContrast", "Equalize", "Invert"):
        return None
    if name == "Rotate":
        return sign * frac * 30.0
    if name in ("ShearX", "ShearY"):
        return sign * frac * 0.3
    if name in ("TranslateXRel", "TranslateYRel"):
        return sign * frac * TRANSLATE_PCT
    if name == "Posterize":
        return xp.floor(frac * 4.0)
    if name == "PosterizeIncreasing":
        return 4.0 - xp.floor(frac * 4.0)
    if name == "PosterizeOriginal":
        return xp.floor(frac * 4.0) + 4.0
    if name == "Solarize":
        return xp.minimum(256.0, xp.floor(frac * 256.0))
    if name == "SolarizeIncreasing":
        return 256.0 - xp.minimum(256.0, xp.floor(frac * 256.0))
    if name == "SolarizeAdd":
        return xp.minimum(128.0, xp.floor(frac * 110.0))
    if name in ("Color", "Contrast", "Brightness", "Sharpness"):
        return frac * 1.8 + 0.1
    if name in ("ColorIncreasing", "ContrastIncreasing", "BrightnessIncreasing",
                "SharpnessIncreasing"):  # fmt: skip
        return xp.maximum(0.1, 1.0 + sign * frac * 0.9)
    raise KeyError(f"unknown augmentation op {name!r}")


@dataclasses.dataclass(frozen=True)
class RandAugmentSpec:
    """timm's `rand-m9-mstd0.5-inc1`: ops per image, magnitude (0..10), its gaussian std
    (inf = uniform in [0, m]), the clip bound, each op's probability, increasing op set."""

    magnitude: float = 10.0
    magnitude_std: float = 0.0
    magnitude_max: float = LEVEL_DENOM
    num_layers: int = 2
    prob: float = 0.5
    increasing: bool = False

    @property
    def ops(self) -> tuple[str, ...]:
        return RAND_INCREASING_TRANSFORMS if self.increasing else RAND_TRANSFORMS


@dataclasses.dataclass(frozen=True)
class AutoAugmentSpec:
    """AutoAugment with timm's `original` ImageNet policy (one sub-policy per image)."""

    magnitude_std: float = 0.0
    policy: tuple = ORIGINAL_POLICY


AugmentSpec = RandAugmentSpec | AutoAugmentSpec | None

_SYNTAX = (
    "data.auto_augment must be '' (off), 'imagenet' / 'original[-mstd<f>]' (AutoAugment ImageNet "
    "policy) or timm's RandAugment string 'rand[-m<int>][-n<int>][-mstd<f>][-mmax<int>][-p<f>]"
    "[-inc<0|1>]', e.g. 'rand-m9-mstd0.5-inc1'"
)


def parse(config_str: str) -> AugmentSpec:
    """data.auto_augment -> spec (None when off); ValueError naming the syntax otherwise."""
    if not config_str:
        return None
    head, *sections = config_str.split("-")
    fields: dict[str, str] = {}
    for section in sections:
        parts = re.split(r"(\d.*)", section)
        if len(parts) < 2 or parts[0] in fields:
            raise ValueError(f"{_SYNTAX}; got {config_str!r}")
        fields[parts[0]] = parts[1]
    try:
        if head in ("imagenet", "original"):
            if set(fields) - {"mstd"}:
                raise ValueError
            return AutoAugmentSpec(magnitude_std=float(fields.get("mstd", 0.0)))
        if head == "rand":
            if set(fields) - {"m", "n", "mstd", "mmax", "p", "inc"}:
                raise ValueError
            mstd = float(fields.get("mstd", 0.0))
            spec = RandAugmentSpec(
                magnitude=float(int(fields.get("m", LEVEL_DENOM))),
                magnitude_std=math.inf if mstd > 100 else mstd,
                magnitude_max=float(int(fields.get("mmax", LEVEL_DENOM))),
                num_layers=int(fields.get("n", 2)),
                prob=float(fields.get("p", 0.5)),
                increasing=bool(int(fields.get("inc", 0))),
            )
            if spec.num_layers < 0 or not 0.0 <= spec.prob <= 1.0 or spec.magnitude_std < 0:
                raise ValueError
            return spec
    except ValueError:
        pass
    raise ValueError(f"{_SYNTAX}; got {config_str!r}")


def fill_color() -> tuple[int, int, int]:
    """The constant timm's geometric ops fill uncovered pixels with (its img_mean hparam)."""
    return tuple(min(255, round(255 * m)) for m in FILL_MEAN)  # (124, 116, 104)


# Random erasing, timm's RandomErasing(mode='pixel', max_count=1): with probability p one
# rectangle of area U(0.02, 1/3) x image area and aspect ratio exp(U(log 0.3, log 1/0.3)),
# h = round(sqrt(area * ratio)), w = round(sqrt(area / ratio)); the first of 10 tries with
# h < H and w < W is placed uniformly (top in [0, H - h], left in [0, W - w]) and filled with
# per-pixel N(0, 1) values in normalised space (after mean/std normalisation).
ERASE_AREA = (0.02, 1.0 / 3.0)
ERASE_LOG_RATIO = (math.log(0.3), math.log(1.0 / 0.3))
ERASE_ATTEMPTS = 10


def erase_box(rng: Any, height: int, width: int, prob: float) -> tuple[int, int, int, int]:
    """(top, left, h, w) of timm's erasing rectangle, (0, 0, 0, 0) for none; `rng` is a
    numpy Generator (the MindSpore side; the TF side draws the same rule vectorised)."""
    if prob <= 0.0 or rng.random() >= prob:
        return (0, 0, 0, 0)
    area = height * width
    for _ in range(ERASE_ATTEMPTS):
        target = rng.uniform(*ERASE_AREA) * area
        ratio = math.exp(rng.uniform(*ERASE_LOG_RATIO))
        h = int(round(math.sqrt(target * ratio)))
        w = int(round(math.sqrt(target / ratio)))
        if h < height and w < width:
            return (int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w)
    return (0, 0, 0, 0)


def check(data: Any) -> None:
    """Value checks of the data.* augmentation fields (ValueError with the field's name)."""
    parse(data.auto_augment)
    if not 0.0 <= data.random_erase <= 1.0:
        raise ValueError(
            f"data.random_erase must be a probability in [0, 1], got {data.random_erase}"
        )
    if data.color_jitter < 0.0:
        raise ValueError(f"data.color_jitter must be >= 0, got {data.color_jitter}")
    if not 0.0 < data.crop_min <= data.crop_max <= 1.0:
        raise ValueError(
            f"data.crop_min/crop_max must satisfy 0 < min <= max <= 1, got {data.crop_min}, "
            f"{data.crop_max}"
        )
    if not 0.0 < data.ratio_min <= data.ratio_max:
        raise ValueError(
            f"data.ratio_min/ratio_max must satisfy 0 < min <= max, got {data.ratio_min}, "
            f"{data.ratio_max}"
        )

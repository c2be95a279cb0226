"""Training augmentations of the MindSpore side: timm's definitions, as the JAX side's.

The policy tables, config syntax, magnitude rules and the erasing rectangle are
input_pipeline/augment_rules.py (framework-free, shared with the JAX side). The image ops here are
timm's own PIL calls (timm.data.auto_augment), so they are timm's definition exactly, with two
choices shared with the TensorFlow ops: geometric ops resample bilinearly, and posterize to 0 bits
gives black (PIL >= 10 raises there).

mindspore.dataset.vision's AutoAugment, RandAugment and RandomErasing follow torchvision, not
timm: AutoAugment(IMAGENET) and RandAugment map magnitudes through torchvision's bins and value
ranges (RandAugment also has no magnitude noise, no per-op probability and another op set), and
RandomErasing draws the aspect ratio uniformly (timm: log-uniform) with h = w / ratio. So those
three are ours (Python ops in the map). Colour jitter is mindspore's RandomColorAdjust with
torchvision ColorJitter's factor ranges [max(0, 1 - s), 1 + s] (timm's color_jitter=s).

Randomness comes from numpy's global generator, which mindspore.dataset.config.set_seed seeds.
"""

from __future__ import annotations

import math
from types import SimpleNamespace
from typing import Any

import numpy as np
from PIL import Image, ImageEnhance, ImageOps

from input_pipeline import augment_rules as rules

_XP = SimpleNamespace(floor=math.floor, minimum=min, maximum=max)
_BILINEAR = Image.Resampling.BILINEAR


def _affine(img: Image.Image, matrix: tuple) -> Image.Image:
    return img.transform(img.size, Image.Transform.AFFINE, matrix, resample=_BILINEAR,
                         fillcolor=rules.fill_color())  # fmt: skip


def _posterize(img: Image.Image, bits: float) -> Image.Image:
    bits = int(bits)
    if bits >= 8:
        return img
    mask = ~(2 ** (8 - bits) - 1) & 0xFF
    return img.point([i & mask for i in range(256)] * 3)


def _solarize_add(img: Image.Image, add: float, thresh: int = 128) -> Image.Image:
    return img.point([min(255, i + int(add)) if i < thresh else i for i in range(256)] * 3)


IMAGE_OPS = {
    "auto_contrast": lambda img: ImageOps.autocontrast(img),
    "equalize": lambda img: ImageOps.equalize(img),
    "invert": lambda img: ImageOps.invert(img),
    "rotate": lambda img, deg: img.rotate(deg, resample=_BILINEAR, fillcolor=rules.fill_color()),
    "posterize": _posterize,
    "solarize": lambda img, thresh: ImageOps.solarize(img, int(thresh)),
    "solarize_add": _solarize_add,
    "color": lambda img, f: ImageEnhance.Color(img).enhance(f),
    "contrast": lambda img, f: ImageEnhance.Contrast(img).enhance(f),
    "brightness": lambda img, f: ImageEnhance.Brightness(img).enhance(f),
    "sharpness": lambda img, f: ImageEnhance.Sharpness(img).enhance(f),
    "shear_x": lambda img, f: _affine(img, (1, f, 0, 0, 1, 0)),
    "shear_y": lambda img, f: _affine(img, (1, 0, 0, f, 1, 0)),
    "translate_x": lambda img, pct: _affine(img, (1, 0, pct * img.size[0], 0, 1, 0)),
    "translate_y": lambda img, pct: _affine(img, (1, 0, 0, 0, 1, pct * img.size[1])),
}


def apply_op(name: str, img: Image.Image, level: float, sign: float) -> Image.Image:
    """timm op `name` at magnitude `level` with the drawn sign (+1/-1)."""
    arg = rules.level_to_arg(name, float(level), float(sign), _XP)
    fn = IMAGE_OPS[rules.IMAGE_OP[name]]
    return fn(img) if arg is None else fn(img, float(arg))


def _maybe_op(img, name, prob, magnitude, std, upper, rng) -> Image.Image:
    """timm AugmentOp.__call__ with draws from `rng`."""
    if prob < 1.0 and rng.random() > prob:
        return img
    if std == math.inf:
        magnitude = rng.uniform(0, magnitude)
    elif std > 0:
        magnitude = rng.normal(magnitude, std)
    level = max(0.0, min(magnitude, upper))
    sign = -1.0 if rng.random() > 0.5 else 1.0
    return apply_op(name, img, level, sign)


def rand_augment(img: Image.Image, rng: Any, spec: rules.RandAugmentSpec) -> Image.Image:
    """timm RandAugment (ops drawn uniformly with replacement)."""
    for index in rng.integers(0, len(spec.ops), spec.num_layers):
        img = _maybe_op(img, spec.ops[index], spec.prob, spec.magnitude, spec.magnitude_std,
                        spec.magnitude_max, rng)  # fmt: skip
    return img


def auto_augment(img: Image.Image, rng: Any, spec: rules.AutoAugmentSpec) -> Image.Image:
    """timm AutoAugment: one sub-policy drawn uniformly."""
    for name, prob, magnitude in spec.policy[rng.integers(0, len(spec.policy))]:
        img = _maybe_op(img, name, prob, float(magnitude), spec.magnitude_std, rules.LEVEL_DENOM,
                        rng)  # fmt: skip
    return img


class TimmAugment:
    """uint8 HWC numpy -> uint8 HWC numpy: data.auto_augment's AutoAugment / RandAugment."""

    def __init__(self, spec: rules.AugmentSpec, rng: Any = None):
        self.spec, self.rng = spec, rng

    def __call__(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng if self.rng is not None else np.random.default_rng(np.random.randint(2**31))
        img = Image.fromarray(np.asarray(image, np.uint8))
        if isinstance(self.spec, rules.RandAugmentSpec):
            img = rand_augment(img, rng, self.spec)
        elif isinstance(self.spec, rules.AutoAugmentSpec):
            img = auto_augment(img, rng, self.spec)
        return np.asarray(img, np.uint8)


class RandomErasing:
    """timm RandomErasing(probability=p, mode='pixel', max_count=1) on a normalised CHW float
    image: the rectangle of augment_rules.erase_box, filled with per-pixel N(0, 1)."""

    def __init__(self, prob: float, rng: Any = None):
        self.prob, self.rng = prob, rng

    def __call__(self, image: np.ndarray) -> np.ndarray:
        rng = self.rng if self.rng is not None else np.random.default_rng(np.random.randint(2**31))
        top, left, h, w = rules.erase_box(rng, image.shape[1], image.shape[2], self.prob)
        if h == 0:
            return image
        out = np.array(image, copy=True)
        out[:, top : top + h, left : left + w] = rng.standard_normal((out.shape[0], h, w))
        return out


def train_ops(data: Any) -> tuple[list, list]:
    """(ops on the uint8 HWC crop, ops on the normalised CHW float image) for data.*"""
    import mindspore.dataset.vision as V

    before: list = []
    spec = rules.parse(data.auto_augment)
    if spec is not None:
        before.append(TimmAugment(spec))
    if data.color_jitter > 0:
        s = data.color_jitter
        before.append(V.RandomColorAdjust(brightness=s, contrast=s, saturation=s))
    after = [RandomErasing(data.random_erase)] if data.random_erase > 0 else []
    return before, after

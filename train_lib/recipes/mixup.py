"""Mixup and cutmix with timm's semantics (timm.data.mixup.Mixup), written once for both sides.

The rules here are array-namespace generic: `xp` is numpy on the MindSpore side and jax.numpy
inside the jitted JAX step. Each side draws the random numbers with its own generator
(`Draws`), everything after the draws is shared:

- `params`: per-example lam and use-cutmix flag for timm's modes. 'batch': one draw for the
  whole batch; 'elem': one draw per example; 'pair': one draw per pair (i, B-1-i), mixed
  symmetrically. The partner of example i is always B-1-i (timm mixes with the flipped batch).
  With probability `prob` a sample is mixed; if both alphas are set, cutmix is chosen with
  probability `switch_prob`. lam ~ Beta(alpha, alpha).
- `boxes`: timm's rand_bbox: side int(H * sqrt(1 - lam)), centre uniform in the image, clipped;
  then the area correction lam = 1 - box area / image area (timm's correct_lam=True).
- `targets`: lam * one_hot(y) + (1 - lam) * one_hot(y_flipped), smoothed as timm's mixup_target
  (on = 1 - s + s/K, off = s/K; smoothing is linear, so smoothing the mixed target is the same).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from ml_collections import ConfigDict

MODES = ("batch", "pair", "elem")


@dataclasses.dataclass(frozen=True)
class MixupSpec:
    mixup_alpha: float
    cutmix_alpha: float
    prob: float
    switch_prob: float
    mode: str

    @property
    def enabled(self) -> bool:
        return (self.mixup_alpha > 0 or self.cutmix_alpha > 0) and self.prob > 0


def spec(config: ConfigDict) -> MixupSpec:
    """The mixup/cutmix fields of config.data."""
    d = config.data
    return MixupSpec(
        float(d.mixup),
        float(d.cutmix),
        float(d.mixup_prob),
        float(d.mixup_switch_prob),
        str(d.mixup_mode),
    )


def check(config: ConfigDict, per_device_batch: int) -> str | None:
    """The user mistake in the mixup fields, as one sentence, or None."""
    s = spec(config)
    if s.mixup_alpha < 0 or s.cutmix_alpha < 0:
        return f"data.mixup={s.mixup_alpha} / data.cutmix={s.cutmix_alpha}: alphas must be >= 0"
    if not 0.0 <= s.prob <= 1.0 or not 0.0 <= s.switch_prob <= 1.0:
        return "data.mixup_prob and data.mixup_switch_prob must be in [0, 1]"
    if s.mode not in MODES:
        return f"data.mixup_mode={s.mode!r}; choose one of {', '.join(MODES)}"
    if s.enabled and s.mode == "pair" and per_device_batch % 2:
        return f"data.mixup_mode='pair' needs an even batch per device, not {per_device_batch}"
    return None


def num_draws(mode: str, batch: int) -> int:
    """How many independent parameter draws a batch takes."""
    return {"batch": 1, "elem": batch, "pair": (batch + 1) // 2}[mode]


@dataclasses.dataclass(frozen=True)
class Draws:
    """Random numbers for `num_draws` samples: uniforms in [0, 1) and Beta(alpha, alpha) draws
    (an alpha that is 0 may get any placeholder; it is never selected)."""

    apply: Any  # uniform: mix if < prob
    switch: Any  # uniform: cutmix if < switch_prob (both alphas set)
    lam_mixup: Any  # Beta(mixup_alpha)
    lam_cutmix: Any  # Beta(cutmix_alpha)
    centre_y: Any  # uniform: box centre row = floor(u * H)
    centre_x: Any  # uniform: box centre column = floor(u * W)


def params(xp, s: MixupSpec, d: Draws, batch: int):
    """(lam, use_cutmix) per example, before the cutmix area correction, and the box centres."""
    if s.mixup_alpha > 0 and s.cutmix_alpha > 0:
        cut = d.switch < s.switch_prob
        lam = xp.where(cut, d.lam_cutmix, d.lam_mixup)
    elif s.cutmix_alpha > 0:
        cut = xp.ones_like(d.apply, dtype=bool)
        lam = d.lam_cutmix
    else:
        cut = xp.zeros_like(d.apply, dtype=bool)
        lam = d.lam_mixup
    mixed = d.apply < s.prob
    lam = xp.where(mixed, lam, 1.0).astype(xp.float32)
    cut = cut & mixed
    cy, cx = d.centre_y, d.centre_x
    n = num_draws(s.mode, batch)
    if s.mode == "batch":
        lam, cut, cy, cx = (xp.broadcast_to(v, (batch,)) for v in (lam, cut, cy, cx))
    elif s.mode == "pair":  # example B-1-i takes pair i's draw
        lam, cut, cy, cx = (xp.concatenate([v, v[: batch - n][::-1]]) for v in (lam, cut, cy, cx))
    return lam, cut, cy, cx


def boxes(xp, lam, cy_u, cx_u, height: int, width: int):
    """timm's rand_bbox + correct_lam: (top, bottom, left, right) per example and corrected lam."""
    ratio = xp.sqrt(1.0 - lam)
    cut_h = xp.floor(height * ratio).astype(xp.int32)
    cut_w = xp.floor(width * ratio).astype(xp.int32)
    cy = xp.minimum(xp.floor(cy_u * height).astype(xp.int32), height - 1)
    cx = xp.minimum(xp.floor(cx_u * width).astype(xp.int32), width - 1)
    top, bottom = xp.clip(cy - cut_h // 2, 0, height), xp.clip(cy + cut_h // 2, 0, height)
    left, right = xp.clip(cx - cut_w // 2, 0, width), xp.clip(cx + cut_w // 2, 0, width)
    area = ((bottom - top) * (right - left)).astype(xp.float32)
    return (top, bottom, left, right), (1.0 - area / (height * width)).astype(xp.float32)


def box_mask(xp, box, height: int, width: int):
    """(B, H, W) bool: inside each example's box."""
    top, bottom, left, right = (v[:, None] for v in box)
    rows = (xp.arange(height)[None, :] >= top) & (xp.arange(height)[None, :] < bottom)
    cols = (xp.arange(width)[None, :] >= left) & (xp.arange(width)[None, :] < right)
    return rows[:, :, None] & cols[:, None, :]


def mix(
    xp,
    s: MixupSpec,
    d: Draws,
    images,
    labels,
    num_classes: int,
    smoothing: float,
    *,
    channels_last: bool,
):
    """(mixed float images, soft targets (B, num_classes), per-example lam) for one batch.

    images: (B, H, W, C) if channels_last else (B, C, H, W), float; labels: (B,) ints.
    """
    batch = images.shape[0]
    h, w = (images.shape[1], images.shape[2]) if channels_last else images.shape[2:4]
    lam, cut, cy, cx = params(xp, s, d, batch)
    box, lam_cut = boxes(xp, lam, cy, cx, h, w)
    inside = box_mask(xp, box, h, w) & cut[:, None, None]
    inside = inside[..., None] if channels_last else inside[:, None]
    lam = xp.where(cut, lam_cut, lam)
    flipped = images[::-1]
    lam_x = xp.where(cut, 1.0, lam).astype(images.dtype)
    lam_x = lam_x.reshape((batch,) + (1,) * (images.ndim - 1))
    blended = images * lam_x + flipped * (1 - lam_x)
    mixed = xp.where(inside, flipped, blended)
    return mixed, targets(xp, labels, lam, num_classes, smoothing), lam


def targets(xp, labels, lam, num_classes: int, smoothing: float):
    """timm's mixup_target: lam * y + (1 - lam) * y[::-1], label-smoothed over all classes."""
    one_hot = (labels[:, None] == xp.arange(num_classes)[None, :]).astype(xp.float32)
    lam = lam[:, None]
    mixed = lam * one_hot + (1.0 - lam) * one_hot[::-1]
    return mixed * (1.0 - smoothing) + smoothing / num_classes

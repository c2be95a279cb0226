"""Random erasing's fill, on device: timm erases after normalisation with per-pixel N(0, 1).

The host pipeline sends uint8 images, so the erasing rectangle (timm's rule, drawn per example
on the host from the example's seed: input_pipeline/augment.py) travels with the batch as
'erase' int32 [B, 4] = (top, left, h, w), h = 0 for none, and the step fills it here after
normalising, in normalised space as timm does. The noise comes from the step's key, so a resumed
run erases exactly as an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

ERASE_KEY = 0x45524153  # folded into the step key: erasing noise independent of dropout


def apply(images: jax.Array, boxes: jax.Array, key: jax.Array) -> jax.Array:
    """images: normalised [B, H, W, C]; boxes int32 [B, 4]; rectangles take N(0, 1) values."""
    _, height, width, _ = images.shape
    top, left, h, w = (boxes[:, i, None, None] for i in range(4))
    rows = jnp.arange(height)[None, :, None]
    cols = jnp.arange(width)[None, None, :]
    inside = (rows >= top) & (rows < top + h) & (cols >= left) & (cols < left + w)
    noise = jax.random.normal(jax.random.fold_in(key, ERASE_KEY), images.shape, jnp.float32)
    return jnp.where(inside[..., None], noise.astype(images.dtype), images)

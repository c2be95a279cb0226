"""The weight-EMA decay rule (train.ema_decay, train.ema_warmup), written once for both sides.

timm's ModelEmaV3: after optimizer step t (counted from 1), ema <- ema + (1 - d_t) (w - ema) over
params and BatchNorm statistics, with d_t = ema_decay, or with warmup (timm's warmup_gamma 1,
warmup_power 2/3) d_t = min(ema_decay, 1 - (1 + t) ** -(2/3)), so early averages are not
dominated by the random initialisation. `xp` is numpy (the MindSpore side tabulates d_t per step,
as it does the learning rate) or jax.numpy (inside the jitted JAX step).
"""

from __future__ import annotations

from typing import Any

import numpy as np

WARMUP_POWER = 2.0 / 3.0


def decay_at(step: Any, decay: float, warmup: bool, xp: Any = np) -> Any:
    """The decay d_t used after optimizer step `step` (1-based), in float32."""
    decay = xp.asarray(decay, xp.float32)
    if not warmup:
        return decay
    ramp = 1.0 - (1.0 + xp.asarray(step).astype(xp.float32)) ** -WARMUP_POWER
    return xp.minimum(decay, ramp)


def decays(num_steps: int, decay: float, warmup: bool) -> np.ndarray:
    """d_1 .. d_num_steps as a float32 table."""
    steps = np.arange(1, num_steps + 1)
    return np.broadcast_to(decay_at(steps, decay, warmup), steps.shape).astype(np.float32)

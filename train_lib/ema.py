"""Exponential moving average of the weights (params and BatchNorm statistics), as timm's
ModelEmaV3: after every optimizer step, ema <- decay * ema + (1 - decay) * weights.

With warmup (train.ema_warmup) the decay of step t (counted from 1) is
min(ema_decay, 1 - (1 + t) ** -(2/3)) (timm's warmup_gamma 1, warmup_power 2/3), so early
averages are not dominated by the random initialisation. The average is kept in float32 in the
train state, checkpointed with it, evaluated next to the raw weights and exported on request
(config.export_ema).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

WARMUP_POWER = 2.0 / 3.0


def init(params: dict, batch_stats: dict) -> dict[str, Any]:
    """The average starts at the initial weights (a copy, so donation cannot alias it)."""
    return jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats})


def decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """The decay used by optimizer step `step` (1-based)."""
    if not warmup:
        return jnp.asarray(decay, jnp.float32)
    ramp = 1.0 - (1.0 + step.astype(jnp.float32)) ** -WARMUP_POWER
    return jnp.minimum(jnp.asarray(decay, jnp.float32), ramp)


def update(ema: dict, params: dict, batch_stats: dict, decay: jax.Array) -> dict:
    """One EMA step towards the current weights (timm's lerp: ema + (1 - decay) * (w - ema))."""
    new = {"params": params, "batch_stats": batch_stats}
    return jax.tree.map(lambda e, w: e + (1.0 - decay) * (w.astype(e.dtype) - e), ema, new)

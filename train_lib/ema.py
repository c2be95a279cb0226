"""Exponential moving average of the weights (params and BatchNorm statistics), as timm's
ModelEmaV3: after every optimizer step, ema <- decay * ema + (1 - decay) * weights.

With warmup (train.ema_warmup) the decay of step t (counted from 1) ramps up as
train_lib.recipes.ema defines it for both sides. The average is kept in float32 in the
train state, checkpointed with it, evaluated next to the raw weights and exported on request
(config.export_ema).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

from train_lib.recipes import ema as ema_rule


def init(params: dict, batch_stats: dict) -> dict[str, Any]:
    """The average starts at the initial weights (a copy, so donation cannot alias it)."""
    return jax.tree.map(jnp.array, {"params": params, "batch_stats": batch_stats})


def decay_at(step: jax.Array, decay: float, warmup: bool) -> jax.Array:
    """The decay used by optimizer step `step` (1-based): train_lib.recipes.ema, shared with the
    MindSpore side."""
    return ema_rule.decay_at(step, decay, warmup, xp=jnp)


def update(ema: dict, params: dict, batch_stats: dict, decay: jax.Array) -> dict:
    """One EMA step towards the current weights (timm's lerp: ema + (1 - decay) * (w - ema))."""
    new = {"params": params, "batch_stats": batch_stats}
    return jax.tree.map(lambda e, w: e + (1.0 - decay) * (w.astype(e.dtype) - e), ema, new)

"""Per-step learning rates from the config's schedule fields, numpy only (MindSpore takes the
array as a dynamic learning rate indexed by its global step).

Semantics (configs/base.py): lr_init, lr_max and lr_end are scaled by global batch /
schedule.reference_batch_size; a linear warmup from lr_init reaches lr_max after warmup_epochs;
then cosine (to lr_end), linear (to lr_end) or step (x decay_factor at each of boundaries_epochs,
counted from step 0) over the remaining steps, or the zoo's linear-times-cosine (zoo_cosine).
schedule.first_step shifts the count as on the JAX side (configs/base.py).
"""

from __future__ import annotations

import math

import numpy as np
from ml_collections import ConfigDict


def learning_rates(
    config: ConfigDict, *, steps_per_epoch: int, total_steps: int, global_batch: int
) -> np.ndarray:
    """float32 [total_steps]: the learning rate used at each optimizer step."""
    s = config.schedule
    scale = global_batch / s.reference_batch_size
    lr_init, lr_max, lr_end = s.lr_init * scale, s.lr_max * scale, s.lr_end * scale
    warmup = min(int(round(s.warmup_epochs * steps_per_epoch)), total_steps)
    first = int(s.first_step)
    steps = np.arange(total_steps, dtype=np.float64)
    decay_steps = max(total_steps - warmup, 1)
    if s.name == "zoo_cosine":
        ramp = lr_init + (lr_max - lr_init) * (steps + first) / max(warmup, 1)
        cos = 0.5 * (1.0 + np.cos(math.pi * 0.94 * steps / decay_steps))
        decayed = lr_max * (total_steps - steps) / decay_steps * cos + lr_end
        return np.where(steps < warmup, ramp, decayed).astype(np.float32)
    steps = steps + first
    t = np.clip(steps - warmup, 0, decay_steps) / decay_steps
    if s.name == "cosine":
        lr = lr_end + (lr_max - lr_end) * 0.5 * (1.0 + np.cos(math.pi * t))
    elif s.name == "linear":
        lr = lr_max + (lr_end - lr_max) * t
    elif s.name == "step":
        bounds = np.asarray(s.boundaries_epochs, dtype=np.float64) * steps_per_epoch
        lr = lr_max * s.decay_factor ** (steps[:, None] >= bounds[None, :]).sum(1)
    else:
        raise ValueError(f"schedule.name {s.name!r}; known: cosine, linear, step, zoo_cosine")
    if warmup:
        lr = np.where(steps < warmup, lr_init + (lr_max - lr_init) * steps / warmup, lr)
    return lr.astype(np.float32)

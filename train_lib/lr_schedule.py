"""The learning rate at each optimizer step, from the config's schedule fields; framework-free.

One function for both environments: train_lib.optim wraps it as an optax schedule (called with
jax.numpy on a traced step count), ascend_port/train.py evaluates it on every step with numpy and
hands MindSpore the array as a dynamic learning rate. Imports numpy and ml_collections only.

Semantics (configs/base.py): lr_init, lr_max and lr_end are written for
schedule.reference_batch_size and scaled by global batch / reference_batch_size. A linear warmup
goes from lr_init to lr_max over warmup_epochs; then cosine (to lr_end), linear (to lr_end) over
the remaining steps, held at lr_end after total_steps; or step: lr_max times decay_factor for each
boundary int(epoch * steps_per_epoch) reached, counted from step 0 (a boundary inside the warmup
applies once the warmup ends).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ml_collections import ConfigDict

SCHEDULES = ("cosine", "linear", "step")


def learning_rate(
    step: Any,
    config: ConfigDict,
    *,
    steps_per_epoch: int,
    total_steps: int,
    global_batch: int,
    xp: Any = np,
) -> Any:
    """The learning rate at optimizer step `step` (an int or an array of them; xp = numpy or
    jax.numpy, whichever array module `step` belongs to). ValueError for an unknown schedule."""
    s = config.schedule
    if s.name not in SCHEDULES:
        raise ValueError(f"schedule.name={s.name!r}; choose one of {', '.join(SCHEDULES)}")
    scale = global_batch / s.reference_batch_size
    lr_init, lr_max, lr_end = s.lr_init * scale, s.lr_max * scale, s.lr_end * scale
    warmup = min(int(round(s.warmup_epochs * steps_per_epoch)), total_steps)
    step = xp.asarray(step, dtype=xp.float32)
    if s.name == "step":
        bounds = [int(e * steps_per_epoch) for e in s.boundaries_epochs]
        decays = sum(xp.where(step >= b, 1.0, 0.0) for b in bounds) if bounds else 0.0
        lr = lr_max * xp.power(float(s.decay_factor), decays)
    else:
        t = xp.clip((step - warmup) / max(total_steps - warmup, 1), 0.0, 1.0)
        if s.name == "cosine":
            # 0.5 * (1 + cos(pi t)) written as cos(pi t / 2)^2: no float32 cancellation at the end.
            lr = lr_end + (lr_max - lr_end) * xp.cos(0.5 * math.pi * t) ** 2
        else:
            lr = lr_max + (lr_end - lr_max) * t
    if warmup:
        lr = xp.where(step < warmup, lr_init + (lr_max - lr_init) * step / warmup, lr)
    return lr


def learning_rates(
    config: ConfigDict, *, steps_per_epoch: int, total_steps: int, global_batch: int
) -> np.ndarray:
    """float32 [total_steps]: the learning rate of every optimizer step (MindSpore's dynamic lr)."""
    steps = np.arange(total_steps)
    lr = learning_rate(
        steps,
        config,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        global_batch=global_batch,
    )
    return np.broadcast_to(np.asarray(lr, np.float32), steps.shape).copy()

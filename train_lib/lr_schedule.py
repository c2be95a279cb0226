"""The learning rate at each optimizer step, from the config's schedule fields; framework-free.

One function for both environments: train_lib.optim wraps it as an optax schedule (called with
jax.numpy on a traced step count), ascend_port/train.py evaluates it on every step with numpy and
hands MindSpore the array as a dynamic learning rate. Imports numpy and ml_collections only.

Semantics (configs/base.py): lr_init, lr_max and lr_end are written for
schedule.reference_batch_size and scaled by global batch / reference_batch_size. A linear warmup
goes from lr_init to lr_max over warmup_epochs; then cosine (to lr_end), linear (to lr_end) over
the remaining steps, held at lr_end after total_steps; or step: lr_max times decay_factor for each
boundary int(epoch * steps_per_epoch) reached, counted from step 0 (a boundary inside the warmup
applies once the warmup ends); or zoo_cosine, the MindSpore model zoo's linear-times-cosine.
schedule.first_step shifts the count (configs/base.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from ml_collections import ConfigDict

SCHEDULES = ("cosine", "linear", "step", "zoo_cosine")


def _between(start: float, end: float, k: Any, n: int, xp: Any) -> Any:
    """start -> end linearly at k / n (k clipped to [0, n]), written from the nearer end: in
    float32, start + (end - start) * k / n loses ~1e-3 relative to a float64 reference near
    the far end when end << start (the last decay steps, the first warmup steps)."""
    k = xp.clip(k, 0, n)
    return xp.where(k * 2 < n, start + (end - start) * (k / n), end + (start - end) * ((n - k) / n))


def learning_rate(
    step: Any,
    config: ConfigDict,
    *,
    steps_per_epoch: int,
    total_steps: int,
    global_batch: int,
    xp: Any = np,
) -> Any:
    """The learning rate at optimizer step `step` (an int or an array of them; xp = numpy, in
    float64, or jax.numpy, in float32, whichever array module `step` belongs to). ValueError for
    an unknown schedule."""
    s = config.schedule
    if s.name not in SCHEDULES:
        raise ValueError(f"schedule.name={s.name!r}; choose one of {', '.join(SCHEDULES)}")
    scale = global_batch / s.reference_batch_size
    lr_init, lr_max, lr_end = s.lr_init * scale, s.lr_max * scale, s.lr_end * scale
    warmup = min(int(round(s.warmup_epochs * steps_per_epoch)), total_steps)
    decay = max(total_steps - warmup, 1)
    first = int(s.get("first_step", 0) or 0)
    i = xp.asarray(step, dtype=np.float64 if xp is np else xp.float32)
    if s.name == "zoo_cosine":
        # research/cv/hardnet src/lr_scheduler.py get_lr(lr_decay_mode='cosine'); its 0.00001
        # floor times lr_max is lr_end here. Only the warmup ramp counts from first_step.
        ramp = lr_init + (lr_max - lr_init) * (i + first) / max(warmup, 1)
        cos = 0.5 * (1.0 + xp.cos(math.pi * 0.94 * i / decay))
        return xp.where(i < warmup, ramp, lr_max * (total_steps - i) / decay * cos + lr_end)
    i = i + first  # schedule.first_step: generators that count from 1
    if s.name == "step":
        bounds = [int(e * steps_per_epoch) for e in s.boundaries_epochs]
        decays = sum(xp.where(i >= b, 1.0, 0.0) for b in bounds) if bounds else 0.0
        lr = lr_max * xp.power(float(s.decay_factor), decays)
    elif s.name == "cosine":
        t = xp.clip((i - warmup) / decay, 0.0, 1.0)
        # 0.5 * (1 + cos(pi t)) written as cos(pi t / 2)^2: no float32 cancellation at the end.
        lr = lr_end + (lr_max - lr_end) * xp.cos(0.5 * math.pi * t) ** 2
    else:
        lr = _between(lr_max, lr_end, i - warmup, decay, xp)
    if warmup:
        lr = xp.where(i < warmup, _between(lr_init, lr_max, i, warmup, xp), lr)
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

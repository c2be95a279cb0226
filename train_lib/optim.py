"""Optimizers and learning-rate schedules from the config (optax), with the recipes' semantics."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

from train_lib.config_checks import OPTIMIZERS, SCHEDULES
from train_lib.errors import UserError


def lr_scale(config: ConfigDict) -> float:
    """Learning rates are written for schedule.reference_batch_size and scale linearly."""
    return config.train.batch_size / config.schedule.reference_batch_size


def create_schedule(config: ConfigDict, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """Linear warmup lr_init -> lr_max, then cosine / linear to lr_end, or x decay_factor steps,
    or the zoo's linear-times-cosine; schedule.first_step shifts the count (see configs/base.py)."""
    s = config.schedule
    if s.name not in SCHEDULES:
        raise UserError(f"schedule.name={s.name!r}; choose one of {', '.join(SCHEDULES)}")
    scale = lr_scale(config)
    lr_init, lr_max, lr_end = s.lr_init * scale, s.lr_max * scale, s.lr_end * scale
    warmup = min(int(round(s.warmup_epochs * steps_per_epoch)), total_steps)
    rest = max(total_steps - warmup, 1)
    first = int(s.first_step)
    if s.name == "zoo_cosine":
        return _zoo_cosine(lr_init, lr_max, lr_end, warmup, total_steps, first)
    if s.name == "cosine":
        main = optax.cosine_decay_schedule(lr_max, rest, alpha=lr_end / lr_max if lr_max else 0.0)
    elif s.name == "linear":
        main = _linear(lr_max, lr_end, rest)
    else:
        boundaries = {
            int(e * steps_per_epoch) - warmup: s.decay_factor
            for e in s.boundaries_epochs
            if int(e * steps_per_epoch) > warmup
        }
        main = optax.piecewise_constant_schedule(lr_max, boundaries)
    if warmup:
        main = optax.join_schedules([_linear(lr_init, lr_max, warmup), main], [warmup])
    return main if not first else (lambda count: main(count + first))


def _linear(start: float, end: float, steps: int) -> optax.Schedule:
    """optax.linear_schedule, written from the near end: its float32 1 - count / steps loses
    ~1e-3 relative to the zoo's float64 lr at the first warmup steps and the last decay steps."""

    def schedule(count):
        i = jnp.clip(jnp.asarray(count, jnp.float32), 0, steps)
        return jnp.where(i * 2 < steps, start + (end - start) * (i / steps),
                         end + (start - end) * ((steps - i) / steps))

    return schedule


def _zoo_cosine(lr_init: float, lr_max: float, lr_end: float, warmup: int, total: int,
                first: int) -> optax.Schedule:
    """research/cv/hardnet src/lr_scheduler.py get_lr(lr_decay_mode='cosine'), its 0.00001 floor
    times lr_max being lr_end here."""
    decay = max(total - warmup, 1)

    def schedule(count):
        i = jnp.asarray(count, jnp.float32)
        ramp = lr_init + (lr_max - lr_init) * (i + first) / max(warmup, 1)
        cos = 0.5 * (1.0 + jnp.cos(jnp.pi * 0.94 * i / decay))
        return jnp.where(i < warmup, ramp, lr_max * (total - i) / decay * cos + lr_end)

    return schedule


def decay_mask(params: dict) -> dict:
    """Which leaves get weight decay: every kernel (ndim > 1); not norm scales/biases or biases."""
    return jax.tree.map(lambda p: p.ndim > 1, params)


def create_optimizer(config: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    o = config.optim
    if o.name not in OPTIMIZERS:
        raise UserError(f"optim.name={o.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    mask = None if o.decay_norm_and_bias else decay_mask
    chain = []
    if config.train.grad_clip_norm:
        chain.append(optax.clip_by_global_norm(config.train.grad_clip_norm))
    if o.name == "adamw":
        chain.append(optax.adamw(schedule, b1=o.adam_b1, b2=o.adam_b2, eps=o.adam_eps,
                                 weight_decay=o.weight_decay, mask=mask))
        return optax.chain(*chain)
    # SGD and RMSProp take L2 decay on the gradient, as PyTorch, TF and MindSpore do.
    if o.weight_decay:
        chain.append(optax.add_decayed_weights(o.weight_decay, mask=mask))
    if o.name == "sgd":
        chain.append(optax.sgd(schedule, momentum=o.momentum or None, nesterov=o.nesterov))
    else:
        # TF/MindSpore/timm RMSpropTF: eps inside the sqrt, mean square starting at 1, and the lr
        # inside the momentum (mom = m * mom + lr * g / rms; optax.rmsprop applies the lr after
        # it, which differs once the lr changes between steps).
        chain.append(optax.scale_by_rms(decay=o.rmsprop_decay, eps=o.eps, eps_in_sqrt=True,
                                        initial_scale=1.0))
        chain.append(optax.scale_by_learning_rate(schedule))
        if o.momentum:
            chain.append(optax.trace(decay=o.momentum))
    return optax.chain(*chain)


def steps_per_epoch(num_train_examples: int, batch_size: int) -> int:
    steps = num_train_examples // batch_size
    if steps == 0:
        raise UserError(
            f"train.batch_size={batch_size} is larger than the {num_train_examples} training examples"
        )
    return steps


def total_steps(config: ConfigDict, per_epoch: int) -> int:
    return int(config.train.steps) if config.train.steps else int(math.ceil(config.train.epochs * per_epoch))

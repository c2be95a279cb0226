"""Optimizers and learning-rate schedules from the config (optax), with the recipes' semantics."""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import optax
from ml_collections import ConfigDict

import models
from train_lib import lr_schedule
from train_lib.config_checks import OPTIMIZERS, SCHEDULES
from train_lib.errors import UserError
from train_lib.recipes import clipping as clip_rule
from train_lib.recipes import weight_decay as decay_rule


def create_schedule(config: ConfigDict, steps_per_epoch: int, total_steps: int) -> optax.Schedule:
    """train_lib.lr_schedule (shared with the MindSpore side) as an optax schedule."""
    if config.schedule.name not in SCHEDULES:
        raise UserError(
            f"schedule.name={config.schedule.name!r}; choose one of {', '.join(SCHEDULES)}"
        )

    def schedule(count):
        return lr_schedule.learning_rate(
            count,
            config,
            steps_per_epoch=steps_per_epoch,
            total_steps=total_steps,
            global_batch=config.train.batch_size,
            xp=jnp,
        )

    return schedule


def decay_mask(params: dict, family: str | None = None) -> dict:
    """Which leaves get weight decay (recipes.weight_decay): every kernel (ndim > 1), except the
    family's no_weight_decay names; never norm scales/biases or biases. Leaves another group
    owns (optax.MaskedNode under multi_transform: a fine-tuned backbone) stay as they are."""
    return {
        name: decay_rule.decayed(name, p.ndim, family=family, decay_norm_and_bias=False)
        if hasattr(p, "ndim")
        else p
        for name, p in params.items()
    }


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """train.grad_clip_norm: every gradient times recipes.clipping's factor (the MindSpore step
    cell's scaling; optax.clip_by_global_norm's up to rounding)."""

    def update(updates, state, params=None):
        del params
        scale = clip_rule.factor(optax.tree.norm(updates), max_norm, jnp)
        return jax.tree.map(lambda g: g * scale.astype(g.dtype), updates), state

    return optax.GradientTransformation(optax.init_empty_state, update)


def create_optimizer(config: ConfigDict, schedule: optax.Schedule) -> optax.GradientTransformation:
    o = config.optim
    if o.name not in OPTIMIZERS:
        raise UserError(f"optim.name={o.name!r}; choose one of {', '.join(OPTIMIZERS)}")
    family = models.info(config.model.name).family if config.model.name in models.names() else None
    mask = None if o.decay_norm_and_bias else functools.partial(decay_mask, family=family)
    chain = []
    if config.train.grad_clip_norm:
        chain.append(clip_by_global_norm(config.train.grad_clip_norm))
    if o.name == "adamw":
        chain.append(
            optax.adamw(
                schedule,
                b1=o.adam_b1,
                b2=o.adam_b2,
                eps=o.adam_eps,
                weight_decay=o.weight_decay,
                mask=mask,
            )
        )
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
        chain.append(
            optax.scale_by_rms(
                decay=o.rmsprop_decay, eps=o.eps, eps_in_sqrt=True, initial_scale=1.0
            )
        )
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
    return (
        int(config.train.steps)
        if config.train.steps
        else int(math.ceil(config.train.epochs * per_epoch))
    )

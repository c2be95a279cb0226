"""Mixup / cutmix on device, inside the jitted train step (rules: recipes.mixup).

The random draws come from a key derived from the train state's rng and step, so a resumed run
mixes exactly as an uninterrupted one.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from train_lib.recipes import mixup as rule

_STREAM = 0x6D6978  # "mix": separates these draws from the dropout / drop-path streams


def draws(key: jax.Array, spec: rule.MixupSpec, batch: int) -> rule.Draws:
    """jax.random draws for one batch (Beta(alpha, alpha) only for alphas that are set)."""
    n = rule.num_draws(spec.mode, batch)
    k = jax.random.split(key, 6)

    def beta(key, alpha):
        return jax.random.beta(key, alpha, alpha, (n,)) if alpha > 0 else jnp.ones((n,))

    return rule.Draws(
        apply=jax.random.uniform(k[0], (n,)),
        switch=jax.random.uniform(k[1], (n,)),
        lam_mixup=beta(k[2], spec.mixup_alpha),
        lam_cutmix=beta(k[3], spec.cutmix_alpha),
        centre_y=jax.random.uniform(k[4], (n,)),
        centre_x=jax.random.uniform(k[5], (n,)),
    )


def apply(
    rng: jax.Array,
    spec: rule.MixupSpec,
    images: jax.Array,
    labels: jax.Array,
    num_classes: int,
    smoothing: float,
) -> tuple[jax.Array, jax.Array]:
    """(mixed NHWC float images, soft targets) for one batch; rng is the step's key."""
    key = jax.random.fold_in(rng, _STREAM)
    mixed, targets, _ = rule.mix(
        jnp,
        spec,
        draws(key, spec, images.shape[0]),
        images,
        labels,
        num_classes,
        smoothing,
        channels_last=True,
    )
    return mixed, targets

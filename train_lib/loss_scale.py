"""Dynamic loss scaling for float16 compute (model.dtype=float16), as torch.cuda.amp.GradScaler
and flax.training.dynamic_scale.DynamicScale define it: the loss is multiplied by `scale` before
differentiation and the gradients divided by it; a step whose gradients are not all finite is
skipped and the scale halved; after GROWTH_INTERVAL finite steps in a row the scale doubles.

Written here rather than taken from flax's DynamicScale because that one owns the
value_and_grad call, and the gradient of a step is accumulated over micro-batches
(train.accum_steps) before the finiteness check. Params, optimizer state and BatchNorm
statistics stay float32; only the scale and its counter live in the train state (checkpointed).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp

INITIAL_SCALE = 2.0**15
GROWTH_INTERVAL = 2000
FACTOR = 2.0
MIN_SCALE = 1.0


def init(scale: float = INITIAL_SCALE) -> dict[str, jax.Array]:
    return {"scale": jnp.asarray(scale, jnp.float32), "good_steps": jnp.zeros((), jnp.int32)}


def all_finite(tree: Any) -> jax.Array:
    leaves = jax.tree.leaves(tree)
    return jnp.all(jnp.stack([jnp.isfinite(x).all() for x in leaves]))


def select(finite: jax.Array, new: Any, old: Any) -> Any:
    """`new` where the step was finite, else `old`, leaf by leaf."""
    return jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)


def adjust(state: dict[str, jax.Array], finite: jax.Array) -> dict[str, jax.Array]:
    """Halve on overflow (not below MIN_SCALE); double after GROWTH_INTERVAL finite steps."""
    good = jnp.where(finite, state["good_steps"] + 1, 0)
    grow = good >= GROWTH_INTERVAL
    scale = jnp.where(
        finite,
        jnp.where(grow, state["scale"] * FACTOR, state["scale"]),
        jnp.maximum(state["scale"] / FACTOR, MIN_SCALE),
    )
    return {"scale": scale, "good_steps": jnp.where(grow, 0, good)}

"""The functional core: a model split once into a static graph and plain dicts of arrays.

Params and BatchNorm statistics are dicts keyed by the canonical dotted names (the names of
models.weights), so checkpoints are readable and export is a copy. Inside jitted steps the
module is rebuilt with nnx.merge; nothing NNX-specific crosses the jit boundary.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
from flax import nnx


def _name(path) -> str:
    keys = [getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))) for k in path]
    if keys and keys[-1] == "value":  # Variable leaves end in GetAttrKey('value')
        keys = keys[:-1]
    return ".".join(str(k) for k in keys)


@dataclasses.dataclass(frozen=True)
class _FlatSpec:
    """Converts an nnx.State to {dotted name: array} and back (structure fixed at split time)."""

    names: tuple[str, ...]
    treedef: Any

    @classmethod
    def of(cls, state) -> _FlatSpec:
        leaves, treedef = jax.tree_util.tree_flatten_with_path(state)
        return cls(tuple(_name(p) for p, _ in leaves), treedef)

    def flatten(self, state) -> dict[str, jax.Array]:
        return dict(zip(self.names, jax.tree_util.tree_leaves(state), strict=True))

    def unflatten(self, flat: dict[str, jax.Array]):
        return jax.tree_util.tree_unflatten(self.treedef, [flat[n] for n in self.names])


class SplitModel:
    """Static half of a model: graph, name layout and the RNG-stream state (re-seeded per step)."""

    def __init__(self, model: nnx.Module):
        self.variant = getattr(model, "variant", None)
        self.num_classes = getattr(model, "num_classes", None)
        self.graphdef, params, stats, self.rngs = nnx.split(model, nnx.Param, nnx.BatchStat, ...)
        self._params, self._stats = _FlatSpec.of(params), _FlatSpec.of(stats)
        self.initial_params = self._params.flatten(params)
        self.initial_stats = self._stats.flatten(stats)

    def apply(
        self,
        params: dict,
        stats: dict,
        images: jax.Array,
        *,
        train: bool,
        rng: jax.Array | None = None,
    ) -> tuple[jax.Array, dict]:
        """Logits and the updated BatchNorm statistics (unchanged in eval mode)."""
        rngs = self.rngs if rng is None else _reseed(self.rngs, rng)
        model = nnx.merge(
            self.graphdef,
            self._params.unflatten(params),
            self._stats.unflatten(stats),
            rngs,
            copy=True,
        )
        model.train() if train else model.eval()
        logits = model(images)
        return logits, self._stats.flatten(nnx.state(model, nnx.BatchStat))


def _reseed(rng_state, rng: jax.Array):
    """Gives every RNG stream (dropout, drop-path) its own key derived from `rng`."""
    leaves, treedef = jax.tree_util.tree_flatten(rng_state)
    new = []
    for i, leaf in enumerate(leaves):
        if jnp.issubdtype(leaf.dtype, jax.dtypes.prng_key):
            new.append(jax.random.fold_in(rng, i))
        else:
            new.append(jnp.zeros_like(leaf))  # stream counters restart from the new key
    return jax.tree_util.tree_unflatten(treedef, new)


@flax.struct.dataclass
class TrainState:
    step: jax.Array
    params: dict[str, jax.Array]
    batch_stats: dict[str, jax.Array]
    opt_state: Any
    rng: jax.Array  # raw uint32 key data, so checkpoints hold plain arrays
    ema: Any = None  # {"params", "batch_stats"} moving average (train_lib.ema); None = off
    loss_scale: Any = None  # fp16 dynamic loss scale (train_lib.loss_scale); None = off

    def as_dict(self) -> dict[str, Any]:
        d = {
            "step": self.step,
            "params": self.params,
            "batch_stats": self.batch_stats,
            "opt_state": self.opt_state,
            "rng": self.rng,
        }
        return d | {
            k: v for k, v in (("ema", self.ema), ("loss_scale", self.loss_scale)) if v is not None
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainState:
        return cls(**d)

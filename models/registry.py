"""Registry of model variants: name -> builder + the metadata of models/variants.py (timm style)."""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import compat, variants
from models import weights as weights_lib

# What a model's weights are: everything else in its state (RNG streams) is rebuilt, not stored.
WEIGHT_COLLECTIONS = (nnx.Param, nnx.BatchStat)

# Family modules register their builders on import. Add a family here and in models/variants.py.
FAMILIES = ("hardnet", "hrnet", "hlg", "hlg_zoo")


@dataclasses.dataclass(frozen=True)
class VariantInfo(variants.Variant):
    """A row of models/variants.py (the metadata both environments share) plus its builder."""

    builder: Callable[..., nnx.Module] | None = None


_REGISTRY: dict[str, VariantInfo] = {}
_loaded = False


def register(name: str, builder: Callable[..., nnx.Module]) -> VariantInfo:
    """Attaches the Flax builder to `name`'s row of models/variants.py."""
    if name in _REGISTRY:
        raise ValueError(f"model {name!r} registered twice")
    row = variants.get(name)
    fields = {f.name: getattr(row, f.name) for f in dataclasses.fields(variants.Variant)}
    _REGISTRY[name] = VariantInfo(**fields, builder=builder)
    return _REGISTRY[name]


# Before anything here traces a random init (models/compat.py says why and what it saves).
compat.unroll_threefry_on_cpu()


def _load_families() -> None:
    global _loaded
    if not _loaded:
        _loaded = True
        for family in FAMILIES:
            importlib.import_module(f"models.{family}")


def names(family: str | None = None) -> list[str]:
    """Registered variant names, optionally of one family, sorted."""
    _load_families()
    return sorted(n for n, i in _REGISTRY.items() if family is None or i.family == family)


def info(name: str) -> VariantInfo:
    _load_families()
    if name not in _REGISTRY:
        raise KeyError(f"unknown model {name!r}; registered: {', '.join(names())}")
    return _REGISTRY[name]


def create(
    name: str,
    *,
    num_classes: int | None = None,
    dtype: jnp.dtype = jnp.float32,
    rngs: nnx.Rngs | None = None,
    weights: Mapping[str, np.ndarray] | None = None,
    **kwargs,
) -> nnx.Module:
    """Builds a variant. Params and BatchNorm statistics are float32; `dtype` is the compute dtype.

    With `weights` (canonical flat dict, checked strictly) the random init is skipped. The model
    starts in eval mode; call `model.train()` before a training step. Extra keyword arguments
    (drop_rate, drop_path_rate, ...) go to the family builder.
    """
    variant = info(name)
    if num_classes is None:
        num_classes = variant.default_num_classes
    key = (rngs if rngs is not None else nnx.Rngs(0)).params()

    def build(r: nnx.Rngs) -> nnx.Module:
        return variant.builder(num_classes=num_classes, dtype=dtype, rngs=r, **kwargs)

    model = _init_compiled(build, key, weights, context=name)
    model.variant = name  # read by weights.save and the checkpoint guard
    model.eval()
    return model


# Eager NNX init runs one random kernel per distinct shape and compiles each: 17-34 s for a
# HarDNet on 2 CPU cores. One jitted init compiled without backend optimisation takes ~5 s and
# runs in ~1 s; the init runs once, so its speed does not matter.
_INIT_COMPILER_OPTIONS = {
    "xla_backend_optimization_level": 0,
    "xla_llvm_disable_expensive_passes": True,
}


def _init_compiled(
    build: Callable[[nnx.Rngs], nnx.Module],
    key: jax.Array,
    weights: Mapping[str, np.ndarray] | None = None,
    context: str = "",
) -> nnx.Module:
    """Runs `build` under one jit. Given `weights`, only the non-weight state (RNG streams) is
    returned from the jitted init, so XLA drops the random initialisers as dead code."""
    graphdefs, abstract_states = [], []

    def init(k):
        graphdef, weight_state, rest = nnx.split(build(nnx.Rngs(k)), WEIGHT_COLLECTIONS, ...)
        graphdefs.append(graphdef)
        # The weights' shapes, read off this trace: a second (eval_shape) build of the model
        # would cost as much Python as this one (~1 s for a HarDNet).
        abstract_states.append(
            jax.tree.map(lambda v: jax.ShapeDtypeStruct(v.shape, v.dtype), weight_state)
        )
        return rest if weights is not None else (weight_state, rest)

    options = {**_INIT_COMPILER_OPTIONS, **compat.cpu_init_compiler_options()}
    compiled = jax.jit(init).lower(key).compile(compiler_options=options)
    out = compiled(key)
    if weights is None:
        return nnx.merge(graphdefs[0], *out)
    # Rebuilt here: Variables made inside the trace refuse writes from outside it.
    abstract_state = jax.tree.map(lambda v: v, abstract_states[0])
    model = nnx.merge(graphdefs[0], abstract_state, out)
    weights_lib.load(model, weights, context=context)
    return model


def abstract(name: str, *, num_classes: int | None = None, **kwargs) -> nnx.Module:
    """The model with ShapeDtypeStructs instead of arrays: shapes and counts at no cost."""
    variant = info(name)
    if num_classes is None:
        num_classes = variant.default_num_classes
    return nnx.eval_shape(
        lambda: variant.builder(
            num_classes=num_classes, dtype=jnp.float32, rngs=nnx.Rngs(0), **kwargs
        )
    )


def count_params(model: nnx.Module) -> int:
    """Number of trainable parameters (BatchNorm statistics excluded), as papers count them."""
    return sum(int(x.size) for x in jax.tree_util.tree_leaves(nnx.state(model, nnx.Param)))

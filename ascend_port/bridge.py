"""Canonical (Flax) weights <-> MindSpore parameters: one generic rule set, numpy only.

Our cells mirror the NNX module tree attribute for attribute, so a parameter keeps its dotted
module path and only the leaf name and layout change:

    canonical leaf          MindSpore leaf       layout
    kernel                  weight               HWIO <-> OIHW, [in, out] <-> [out, in]
    scale (a norm)          gamma
    bias  (a norm)          beta                 (a module whose leaves include `scale` is a norm)
    mean                    moving_mean
    var                     moving_variance
    bias  (conv / dense)    bias
    anything else           unchanged            (pos_embed, cls_token, ... keep name and layout)

No per-model table. Both environments import this module (the JAX side to write MindSpore-ready
files, ascend_port to load them), so it must never import jax or mindspore.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

import numpy as np

from models import layout
from models.weights_check import WeightsMismatchError, check_compatible

__all__ = [
    "WeightsMismatchError",
    "canonical_to_ms",
    "canonical_to_ms_names",
    "check_compatible",
    "drop_optimizer_state",
    "is_optimizer_state",
    "ms_shapes_to_canonical",
    "ms_to_canonical",
    "ms_to_canonical_names",
]

_TO_MS_LEAF = {"kernel": "weight", "mean": "moving_mean", "var": "moving_variance"}
_TO_MS_NORM_LEAF = {"scale": "gamma", "bias": "beta"}
_FROM_MS_LEAF = {"weight": "kernel", "moving_mean": "mean", "moving_variance": "var"}
_FROM_MS_NORM_LEAF = {"gamma": "scale", "beta": "bias"}

# Transposes of models.layout, applied to shapes (checked against layout in the tests).
_SHAPE_PERM_TO_CANONICAL = {4: (2, 3, 1, 0), 2: (1, 0)}


def _split(key: str) -> tuple[str, str]:
    return layout.split_key(key)


def _join(module: str, leaf: str) -> str:
    return f"{module}.{leaf}" if module else leaf


def _leaves_by_module(keys: Iterable[str]) -> dict[str, set[str]]:
    out: dict[str, set[str]] = {}
    for key in keys:
        module, leaf = _split(key)
        out.setdefault(module, set()).add(leaf)
    return out


def _rename_all(keys: Iterable[str], rename) -> dict[str, str]:
    keys = list(keys)
    siblings = _leaves_by_module(keys)
    names = {}
    for key in keys:
        module, leaf = _split(key)
        names[key] = _join(module, rename(leaf, siblings[module]))
    return names


def _canonical_leaf_to_ms(leaf: str, siblings: set[str]) -> str:
    if "scale" in siblings and leaf in _TO_MS_NORM_LEAF:
        return _TO_MS_NORM_LEAF[leaf]
    return _TO_MS_LEAF.get(leaf, leaf)


def _ms_leaf_to_canonical(leaf: str, siblings: set[str]) -> str:
    if "gamma" in siblings and leaf in _FROM_MS_NORM_LEAF:
        return _FROM_MS_NORM_LEAF[leaf]
    return _FROM_MS_LEAF.get(leaf, leaf)


def _checked(names: dict[str, str], inverse, direction: str) -> dict[str, str]:
    """Refuses a mapping that is not one to one or does not invert (a leaf the rules misread,
    e.g. a layer-scale parameter called `gamma`), naming the keys."""
    targets: dict[str, str] = {}
    clashes = []
    for src, dst in names.items():
        if dst in targets:
            clashes.append(f"{targets[dst]} and {src} -> {dst}")
        targets[dst] = src
    back = inverse(names.values())
    ambiguous = [f"{src} -> {dst} -> {back[dst]}" for src, dst in names.items() if back[dst] != src]
    if clashes or ambiguous:
        raise ValueError(
            f"{direction}: the generic rename is not one to one for these keys; rename the "
            f"parameter in the model: {'; '.join(clashes + ambiguous)}"
        )
    return names


def canonical_to_ms_names(keys: Iterable[str]) -> dict[str, str]:
    """{canonical key: MindSpore parameter name} for a whole model's key set."""
    keys = list(keys)
    names = _rename_all(keys, _canonical_leaf_to_ms)
    return _checked(
        names, lambda ks: _rename_all(ks, _ms_leaf_to_canonical), "canonical -> MindSpore"
    )


def ms_to_canonical_names(keys: Iterable[str]) -> dict[str, str]:
    """{MindSpore parameter name: canonical key} for a whole model's key set."""
    keys = list(keys)
    names = _rename_all(keys, _ms_leaf_to_canonical)
    return _checked(
        names, lambda ks: _rename_all(ks, _canonical_leaf_to_ms), "MindSpore -> canonical"
    )


def _is_kernel(canonical_key: str) -> bool:
    return _split(canonical_key)[1] == "kernel"


def canonical_to_ms(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical weights -> MindSpore names and layouts (conv OIHW, dense [out, in])."""
    names = canonical_to_ms_names(flat)
    return {
        names[k]: layout.from_flax_layout(np.asarray(v)) if _is_kernel(k) else np.asarray(v)
        for k, v in flat.items()
    }


def ms_to_canonical(flat: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """MindSpore parameters -> canonical names and Flax layouts (conv HWIO, dense [in, out])."""
    names = ms_to_canonical_names(flat)
    return {
        names[k]: layout.to_flax_layout(np.asarray(v)) if _is_kernel(names[k]) else np.asarray(v)
        for k, v in flat.items()
    }


def ms_shapes_to_canonical(shapes: Mapping[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """What ms_to_canonical does to names and shapes, without arrays (for strict checks)."""
    names = ms_to_canonical_names(shapes)
    out = {}
    for key, shape in shapes.items():
        shape = tuple(shape)
        perm = _SHAPE_PERM_TO_CANONICAL.get(len(shape)) if _is_kernel(names[key]) else None
        out[names[key]] = tuple(shape[i] for i in perm) if perm else shape
    return out


# MindSpore optimizer and loss-scale state saved next to the network in a training .ckpt
# (nn.Momentum: moments.*; AdamWeightDecay/our AdamW: adam_m.*, adam_v.*; RMSProp: mean_square.*,
# moment.*, mean_grad.*; Adam: moment1.*, moment2.*; plus scalars). Dropped only when reading a
# .ckpt into a model, never when converting canonical files.
_OPTIMIZER_PREFIXES = (
    "ema moments adam_m adam_v moment1 moment2 vhat mean_square moment mean_grad accum stat lamb_m lamb_v"
).split()
_OPTIMIZER_SCALARS = (
    "global_step learning_rate momentum beta1_power beta2_power scale_sense loss_scale "
    "current_iterator_step last_overflow_iterator_step epoch_num step_num"
).split()
_OPTIMIZER_RE = re.compile(  # learning_rate_group_N: per-group lr arrays (a fine-tuned backbone)
    rf"^(({'|'.join(_OPTIMIZER_PREFIXES)})\..+|{'|'.join(_OPTIMIZER_SCALARS)}|learning_rate_group_\d+)$"
)


def is_optimizer_state(name: str) -> bool:
    """True for optimizer/loss-scale/bookkeeping entries of a MindSpore training checkpoint."""
    return bool(_OPTIMIZER_RE.match(name))


def drop_optimizer_state(
    flat: Mapping[str, np.ndarray], keep: Iterable[str] = ()
) -> tuple[dict[str, np.ndarray], list[str]]:
    """(network entries, dropped names); names in `keep` (the model's own) are never dropped."""
    keep = set(keep)
    kept, dropped = {}, []
    for name, value in flat.items():
        if name not in keep and is_optimizer_state(name):
            dropped.append(name)
        else:
            kept[name] = value
    return kept, dropped

"""Array layout rules shared by every weight converter (numpy only, no framework import).

Canonical weights use Flax layouts: conv kernels HWIO, dense kernels [in, out]. PyTorch and
MindSpore both store conv weights OIHW and dense weights [out, in]; the transform is chosen by
rank, so no per-model table is needed. This module is imported by the MindSpore side too, so it
must never import jax.
"""

from __future__ import annotations

import numpy as np

# Rank -> the axes that take a PyTorch/MindSpore array to the Flax layout (OIHW -> HWIO,
# [out, in] -> [in, out]); `from_flax_layout` applies the inverse permutation.
_TO_FLAX_AXES = {4: (2, 3, 1, 0), 2: (1, 0)}


def to_flax_layout(array: np.ndarray) -> np.ndarray:
    """OIHW conv -> HWIO, [out, in] dense -> [in, out]; vectors unchanged."""
    axes = _TO_FLAX_AXES.get(array.ndim)
    return array if axes is None else np.ascontiguousarray(array.transpose(axes))


def from_flax_layout(array: np.ndarray) -> np.ndarray:
    """HWIO conv -> OIHW, [in, out] dense -> [out, in]; vectors unchanged."""
    axes = _TO_FLAX_AXES.get(array.ndim)
    return array if axes is None else np.ascontiguousarray(array.transpose(np.argsort(axes)))


# PyTorch leaf name -> canonical (Flax) leaf name. `weight` depends on rank: a 1-D weight is a
# norm scale, anything else a conv/dense kernel.
_TORCH_LEAVES = {"running_mean": "mean", "running_var": "var", "bias": "bias"}
TORCH_BOOKKEEPING = ("num_batches_tracked",)


def torch_leaf_to_canonical(leaf: str, ndim: int) -> str:
    if leaf == "weight":
        return "scale" if ndim == 1 else "kernel"
    if leaf in _TORCH_LEAVES:
        return _TORCH_LEAVES[leaf]
    return leaf  # parameters such as pos_embed / cls_token keep their names


def split_key(key: str) -> tuple[str, str]:
    """'a.b.c.weight' -> ('a.b.c', 'weight')."""
    head, _, leaf = key.rpartition(".")
    return head, leaf

"""Array layout rules shared by every weight converter (numpy only, no framework import).

Canonical weights use Flax layouts: conv kernels HWIO, dense kernels [in, out]. PyTorch and
MindSpore both store conv weights OIHW and dense weights [out, in]; the transform is chosen by
rank, so no per-model table is needed. This module is imported by the MindSpore side too, so it
must never import jax.
"""

from __future__ import annotations

import numpy as np


def to_flax_layout(array: np.ndarray) -> np.ndarray:
    """OIHW conv -> HWIO, [out, in] dense -> [in, out]; vectors unchanged."""
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(2, 3, 1, 0))
    if array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


def from_flax_layout(array: np.ndarray) -> np.ndarray:
    """HWIO conv -> OIHW, [in, out] dense -> [out, in]; vectors unchanged."""
    if array.ndim == 4:
        return np.ascontiguousarray(array.transpose(3, 2, 0, 1))
    if array.ndim == 2:
        return np.ascontiguousarray(array.T)
    return array


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

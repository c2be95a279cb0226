"""Canonical weights: a model's params and BatchNorm statistics as {"dotted.path.leaf": array}.

This is the one interchange format of the project: Flax layouts (conv HWIO, dense [in, out]),
stored as safetensors with the model name and class count in the metadata (models/canonical.py,
shared with the MindSpore side). Every load is strict and names the keys that do not fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import canonical

# Re-exported: the check is framework-free so that ascend_port (no jax) shares it.
from models.weights_check import WeightsMismatchError, check_compatible  # noqa: F401

FORMAT = canonical.FORMAT
_COLLECTIONS = (nnx.Param, nnx.BatchStat)


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    state = nnx.state(model, _COLLECTIONS)
    return {_dotted(path): var for path, var in nnx.to_flat_state(state)}


def flatten(model: nnx.Module) -> dict[str, np.ndarray]:
    """All params and BatchNorm statistics as numpy arrays keyed by dotted module path."""
    return {k: np.asarray(v.get_value()) for k, v in _variables(model).items()}


def shapes(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.get_value().shape) for k, v in _variables(model).items()}


def load(model: nnx.Module, flat: Mapping[str, np.ndarray], *, context: str = "") -> nnx.Module:
    """Writes `flat` into `model` in place (strict: same keys, same shapes). Returns the model."""
    variables = _variables(model)
    check_compatible({k: tuple(v.get_value().shape) for k, v in variables.items()}, flat, context)
    for key, var in variables.items():
        var.set_value(
            jnp.asarray(flat[key], dtype=var.get_value().dtype)
        )  # also fills abstract vars
    return model


def save(model: nnx.Module, path: str | os.PathLike, **metadata: str | int) -> None:
    """Writes the canonical weights as safetensors; model name and class count go in metadata."""
    canonical.write(
        flatten(model),
        path,
        model=getattr(model, "variant", None),
        num_classes=getattr(model, "num_classes", None),
        **metadata,
    )


read = canonical.read  # (flat weights, metadata) of a canonical file

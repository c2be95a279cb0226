"""Canonical weights: a model's params and BatchNorm statistics as {"dotted.path.leaf": array}.

This is the one interchange format of the project (DESIGN.md section 3): Flax layouts (conv HWIO,
dense [in, out]), stored as safetensors with the model name and class count in the metadata.
Every load is strict and names the keys that do not fit.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import jax.numpy as jnp
import numpy as np
from flax import nnx
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

FORMAT = "hhl-canonical-v1"
_COLLECTIONS = (nnx.Param, nnx.BatchStat)


class WeightsMismatchError(ValueError):
    """Raised when a weight dict does not fit a model; lists every offending key."""

    def __init__(self, missing=(), unexpected=(), mismatched=(), context: str = ""):
        self.missing, self.unexpected, self.mismatched = list(missing), list(unexpected), list(mismatched)
        parts = []
        if self.missing:
            parts.append(f"missing keys ({len(self.missing)}): {_preview(self.missing)}")
        if self.unexpected:
            parts.append(f"unexpected keys ({len(self.unexpected)}): {_preview(self.unexpected)}")
        if self.mismatched:
            shown = [f"{k} (expected {e}, got {g})" for k, e, g in self.mismatched]
            parts.append(f"shape mismatches ({len(shown)}): {_preview(shown)}")
        prefix = f"{context}: " if context else ""
        super().__init__(prefix + "weights do not fit the model; " + "; ".join(parts))


def _preview(items: list[str], limit: int = 12) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", ... ({len(items) - limit} more)" if len(items) > limit else "")


def _dotted(path) -> str:
    return ".".join(str(p) for p in path)


def _variables(model: nnx.Module) -> dict[str, nnx.Variable]:
    state = nnx.state(model, _COLLECTIONS)
    return {_dotted(path): var for path, var in state.flat_state()}


def flatten(model: nnx.Module) -> dict[str, np.ndarray]:
    """All params and BatchNorm statistics as numpy arrays keyed by dotted module path."""
    return {k: np.asarray(v.get_value()) for k, v in _variables(model).items()}


def shapes(model: nnx.Module) -> dict[str, tuple[int, ...]]:
    return {k: tuple(v.get_value().shape) for k, v in _variables(model).items()}


def check_compatible(
    expected: Mapping[str, tuple[int, ...]], flat: Mapping[str, np.ndarray], context: str = ""
) -> None:
    """Raises WeightsMismatchError unless `flat` has exactly the expected keys and shapes."""
    missing = sorted(set(expected) - set(flat))
    unexpected = sorted(set(flat) - set(expected))
    mismatched = [
        (k, tuple(expected[k]), tuple(np.shape(flat[k])))
        for k in sorted(set(expected) & set(flat))
        if tuple(expected[k]) != tuple(np.shape(flat[k]))
    ]
    if missing or unexpected or mismatched:
        raise WeightsMismatchError(missing, unexpected, mismatched, context)


def load(model: nnx.Module, flat: Mapping[str, np.ndarray], *, context: str = "") -> nnx.Module:
    """Writes `flat` into `model` in place (strict: same keys, same shapes). Returns the model."""
    variables = _variables(model)
    check_compatible({k: tuple(v.get_value().shape) for k, v in variables.items()}, flat, context)
    for key, var in variables.items():
        var.set_value(jnp.asarray(flat[key], dtype=var.get_value().dtype))
    return model


def save(model: nnx.Module, path: str | os.PathLike, **metadata: str | int) -> None:
    """Writes the canonical weights as safetensors; model name and class count go in metadata."""
    meta = {"format": FORMAT}
    if getattr(model, "variant", None):
        meta["model"] = model.variant
    if getattr(model, "num_classes", None):
        meta["num_classes"] = str(model.num_classes)
    meta.update({k: str(v) for k, v in metadata.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file(flatten(model), os.fspath(path), metadata=meta)


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Reads a canonical safetensors file: (flat weights, metadata)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    with safe_open(path, framework="numpy") as f:
        metadata = dict(f.metadata() or {})
    return load_file(path), metadata

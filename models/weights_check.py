"""Strict key/shape check for weight dicts, framework-free (numpy only).

Shared by `models.weights` (JAX side) and `ascend_port` (MindSpore side, which has no jax), so every
conversion in the project reports a misfit the same way: missing, unexpected and mis-shaped keys.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np


class WeightsMismatchError(ValueError):
    """Raised when a weight dict does not fit a model; lists every offending key."""

    def __init__(self, missing=(), unexpected=(), mismatched=(), context: str = ""):
        self.missing, self.unexpected, self.mismatched = (
            list(missing),
            list(unexpected),
            list(mismatched),
        )
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

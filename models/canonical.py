"""The canonical weights file: flat {"dotted.path.leaf": array} in safetensors, plus metadata.

The one reader and writer of the format, numpy and safetensors only, so that both environments
use it: models.weights (Flax) and ascend_port (MindSpore, no jax). Metadata keys: `format`,
`model`, `num_classes`, and whatever a caller adds (e.g. `source`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import numpy as np
from safetensors import safe_open
from safetensors.numpy import load_file, save_file

FORMAT = "hhl-canonical-v1"


def read(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(flat canonical weights, metadata) of a canonical safetensors file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"weights file not found: {path}")
    with safe_open(path, framework="numpy") as f:
        metadata = dict(f.metadata() or {})
    return load_file(path), metadata


def write(
    flat: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    model: str | None = None,
    num_classes: int | None = None,
    **metadata: str | int,
) -> None:
    """Writes canonical weights with `format` and, when given, `model` and `num_classes`."""
    meta = {"format": FORMAT}
    if model:
        meta["model"] = model
    if num_classes:
        meta["num_classes"] = str(num_classes)
    meta.update({k: str(v) for k, v in metadata.items()})
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in flat.items()}, os.fspath(path), metadata=meta)

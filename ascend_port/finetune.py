"""Start a run from weights trained for another class count: every weight but the classifier.

The classifier is found by the framework-free rule the JAX side uses (models/classifier.py).
"""

from __future__ import annotations

import os

import mindspore as ms
import numpy as np
from absl import logging
from mindspore import nn

from ascend_port import bridge
from ascend_port import weights as msw
from ascend_port.errors import UserError
from models.classifier import classifier_keys as shared_classifier_keys
from models.weights_check import check_compatible


def classifier_keys(cell: nn.Cell) -> list[str]:
    """MindSpore names of the classifier's parameters (weight and bias): the JAX side's rule
    (models/classifier.py) on MindSpore's [out, in] dense layout."""
    return shared_classifier_keys(msw.cell_shapes(cell), cell.num_classes, out_axis=0)


def _file_arrays(cell: nn.Cell, path: str) -> dict[str, np.ndarray]:
    """The file's weights under MindSpore names (optimizer state of a .ckpt dropped)."""
    if path.endswith(".safetensors"):
        flat, _ = msw.read_canonical(path)
        return bridge.canonical_to_ms(flat)
    arrays, _ = msw.read_ckpt(path)
    return msw.network_entries(arrays, cell, source=path)


def load_init(cell: nn.Cell, path: str) -> list[str]:
    """Loads `path` into `cell`. When only the classifier's shapes differ (another class
    count), every other weight is loaded and the cell keeps its fresh classifier; returns the
    skipped keys (logged in one line). Any other misfit raises, naming the file's keys."""
    path = os.fspath(path)
    head = classifier_keys(cell)
    shapes = msw.cell_shapes(cell)
    if path.endswith((".safetensors", ".ckpt")) and os.path.exists(path) and head:
        try:
            arrays = _file_arrays(cell, path)
        except (ValueError, OSError, UserError):
            arrays = {}  # unreadable: load_weights below reports it
        differs = [k for k in head if k in arrays and tuple(arrays[k].shape) != shapes[k]]
        if differs and set(head) <= set(arrays):
            body = {k: v for k, v in arrays.items() if k not in head}
            body_shapes = {k: s for k, s in shapes.items() if k not in head}
            try:
                check_compatible(body_shapes, body)
            except ValueError:
                pass  # more than the classifier differs: the strict load names it all
            else:
                dtypes = {p.name: p.dtype for p in cell.get_parameters()}
                params = {
                    k: ms.Parameter(ms.Tensor(np.asarray(v), dtype=dtypes[k]), name=k)
                    for k, v in body.items()
                }
                ms.load_param_into_net(cell, params, strict_load=True)
                theirs = tuple(arrays[differs[0]].shape)
                if path.endswith(".safetensors"):  # name them as the file does
                    shown = list(bridge.ms_to_canonical_names(head).values())
                else:
                    shown = head
                logging.warning(
                    "%s: loaded every weight but the classifier (%s: %s in the file, %s here), "
                    "which starts fresh",
                    path,
                    ", ".join(shown),
                    theirs,
                    shapes[differs[0]],
                )
                return head
    msw.load_weights(cell, path)
    return []

"""Weights in and out of MindSpore cells: canonical .safetensors and MindSpore .ckpt, strict.

Names and layouts are translated by ascend_port.bridge only. A .ckpt written by a MindSpore
training run also holds optimizer state (moments.*, adam_m.*, global_step, learning_rate, ...);
those entries are ignored when reading a .ckpt into a cell, and nowhere else.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

import mindspore as ms
import numpy as np
from mindspore import nn
from safetensors import SafetensorError

from ascend_port import bridge, ckpt_file
from ascend_port.errors import UserError
from models import canonical
from models.weights_check import check_compatible

log = logging.getLogger(__name__)

# String entries our ckpt writers add so that a .ckpt names its model (like safetensors metadata).
META_MODEL, META_NUM_CLASSES = "hhl_model", "hhl_num_classes"


def _parameters(cell: nn.Cell) -> dict[str, ms.Parameter]:
    # Parameter.name is what save_checkpoint writes and load_param_into_net matches.
    return {p.name: p for p in cell.get_parameters()}


def cell_shapes(cell: nn.Cell) -> dict[str, tuple[int, ...]]:
    """{MindSpore parameter name: shape} of every parameter (BN moving statistics included)."""
    return {name: tuple(p.shape) for name, p in _parameters(cell).items()}


def cell_flat(cell: nn.Cell) -> dict[str, np.ndarray]:
    """Every parameter of `cell` as numpy, under its MindSpore name."""
    return {name: p.asnumpy() for name, p in _parameters(cell).items()}


def canonical_flat(cell: nn.Cell) -> dict[str, np.ndarray]:
    """The cell's weights in canonical names and layouts."""
    return bridge.ms_to_canonical(cell_flat(cell))


def read_canonical(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """canonical.read, with a file that is not safetensors reported as a UserError."""
    try:
        return canonical.read(path)
    except SafetensorError as e:
        what = "empty" if os.path.getsize(path) == 0 else f"not a safetensors file ({e})"
        raise UserError(f"{os.fspath(path)} is {what}") from None


def read_ckpt(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """(arrays, string entries) of a MindSpore .ckpt; nothing is dropped here."""
    arrays, meta = {}, {}
    for name, value in ckpt_file.load_checkpoint(path).items():
        if isinstance(value, str):
            meta[name] = value
        else:
            arrays[name] = value.asnumpy()
    return arrays, meta


def write_ckpt(
    ms_flat: Mapping[str, np.ndarray],
    path: str | os.PathLike,
    *,
    model: str | None = None,
    num_classes: int | None = None,
) -> None:
    """Saves MindSpore-named arrays as a .ckpt (mindspore.save_checkpoint of a parameter list)."""
    params = [{"name": k, "data": ms.Tensor(np.ascontiguousarray(v))} for k, v in ms_flat.items()]
    extra = {}
    if model:
        extra[META_MODEL] = model
    if num_classes:
        extra[META_NUM_CLASSES] = str(num_classes)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    ms.save_checkpoint(params, os.fspath(path), append_dict=extra or None)


def network_entries(
    arrays: Mapping[str, np.ndarray], cell: nn.Cell, *, source: str = ""
) -> dict[str, np.ndarray]:
    """Drops the optimizer state of a training .ckpt (logging how much), keeping the cell's own."""
    kept, dropped = bridge.drop_optimizer_state(arrays, keep=cell_shapes(cell))
    if dropped:
        log.info(
            "%s: ignored %d optimizer-state entries (%s, ...)", source, len(dropped), dropped[0]
        )
    return kept


def assign(cell: nn.Cell, ms_flat: Mapping[str, np.ndarray], *, context: str = "") -> nn.Cell:
    """Strictly writes MindSpore-named arrays into `cell` (load_param_into_net, strict_load)."""
    shapes = cell_shapes(cell)
    check_compatible(shapes, ms_flat, context)
    dtypes = {name: p.dtype for name, p in _parameters(cell).items()}
    params = {
        k: ms.Parameter(ms.Tensor(np.asarray(v), dtype=dtypes[k]), name=k)
        for k, v in ms_flat.items()
    }
    not_loaded, unused = ms.load_param_into_net(cell, params, strict_load=True)
    if not_loaded or unused:  # cannot happen after check_compatible; guards MindSpore changes
        raise RuntimeError(f"{context}: not loaded {not_loaded}, unused {unused}")
    return cell


def ema_entries(arrays: Mapping[str, np.ndarray], *, source: str = "") -> dict[str, np.ndarray]:
    """The weight average (train.ema_decay) a training .ckpt holds as ema.<name>, under <name>."""
    prefix = "ema."
    found = {k[len(prefix) :]: v for k, v in arrays.items() if k.startswith(prefix)}
    if not found:
        raise UserError(f"{source} holds no EMA weights (train.ema_decay was 0); unset export_ema")
    return found


def load_weights(cell: nn.Cell, path: str | os.PathLike, *, ema: bool = False) -> nn.Cell:
    """Loads a canonical `.safetensors` or a MindSpore `.ckpt` into `cell` (strict; errors name
    the missing, unexpected and mis-shaped keys). Returns the cell. `ema`: the weight average
    of a training .ckpt instead of its weights."""
    path = os.fspath(path)
    name = getattr(cell, "variant", type(cell).__name__)
    context = f"{path} -> {name}"
    if ema:
        if not path.endswith(".ckpt"):
            raise UserError(f"{path}: EMA weights come from a training checkpoint (.ckpt)")
        arrays, _ = read_ckpt(path)
        return assign(cell, ema_entries(arrays, source=path), context=context)
    if path.endswith(".safetensors"):
        flat, _ = read_canonical(path)
        check_compatible(bridge.ms_shapes_to_canonical(cell_shapes(cell)), flat, context)
        return assign(cell, bridge.canonical_to_ms(flat), context=context)
    if path.endswith(".ckpt"):
        arrays, _ = read_ckpt(path)
        return assign(cell, network_entries(arrays, cell, source=path), context=context)
    hint = ""
    if path.endswith((".pth", ".pt", ".bin")):
        hint = "; convert PyTorch weights first with python -m models.torch_import"
    raise UserError(f"{path}: expected a canonical .safetensors or a MindSpore .ckpt file{hint}")

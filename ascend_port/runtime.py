"""Process setup shared by the MindSpore CLIs: device, execution mode, data-parallel group."""

from __future__ import annotations

import logging
import os

import mindspore as ms
from ml_collections import ConfigDict

_MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def device_target(flag: str, config: ConfigDict) -> str:
    """--device_target if given, else config.ascend.device_target."""
    target = flag or config.ascend.device_target
    if target not in ("Ascend", "GPU", "CPU"):
        raise ValueError(f"device target {target!r}; expected Ascend, GPU or CPU")
    return target


def setup(target: str, mode: str = "graph", distributed: bool = False) -> tuple[int, int]:
    """Sets device and mode (MindSpore 2.10 API); with `distributed`, joins the HCCL/NCCL group
    and switches on data parallelism (mean of gradients). Returns (rank, group size)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    if mode not in _MODES:
        raise ValueError(f"mode {mode!r}; expected one of {sorted(_MODES)}")
    device_id = os.environ.get("DEVICE_ID")  # set per process by HCCL rank-table launch scripts
    if target != "CPU" and device_id is not None:
        ms.set_device(target, int(device_id))
    else:
        ms.set_device(target)
    ms.set_context(mode=_MODES[mode])
    if not distributed:
        return 0, 1
    from mindspore.communication import get_group_size, get_rank, init

    init()  # HCCL on Ascend, NCCL on GPU (MindSpore picks the backend from the device)
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(
        parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=size
    )
    return rank, size

"""Process setup shared by the MindSpore modes: device, execution mode, data-parallel group."""

from __future__ import annotations

import os

import mindspore as ms

_MODES = {"graph": ms.GRAPH_MODE, "pynative": ms.PYNATIVE_MODE}


def setup(target: str, mode: str = "graph") -> None:
    """Sets the device (config.ascend.device_target) and execution mode (config.ascend.mode)
    with the MindSpore 2.10 API."""
    device_id = os.environ.get("DEVICE_ID")  # set per process by HCCL rank-table launch scripts
    if target != "CPU" and device_id is not None:
        ms.set_device(target, int(device_id))
    else:
        ms.set_device(target)
    ms.set_context(mode=_MODES[mode])


def join_group() -> tuple[int, int]:
    """Joins the HCCL/NCCL group of the launched processes (msrun, mpirun or a rank table) and
    switches on data parallelism (mean of gradients). Returns (rank, group size)."""
    from mindspore.communication import get_group_size, get_rank, init

    init()  # HCCL on Ascend, NCCL on GPU, MindSpore's own on CPU (msrun)
    rank, size = get_rank(), get_group_size()
    ms.set_auto_parallel_context(
        parallel_mode=ms.ParallelMode.DATA_PARALLEL, gradients_mean=True, device_num=size
    )
    return rank, size

"""Reads a MindSpore .ckpt with mindspore.load_checkpoint, judging free memory as the kernel does.

MindSpore 2.10 refuses a .ckpt whose protobuf is larger than *free* memory, which it reads as
sysconf(SC_AVPHYS_PAGES) = MemFree. MemFree leaves out the page cache the kernel gives back on
demand, so on any node that has read its dataset or written checkpoints (MemFree of a few
hundred MB on a 24 GB machine with 20 GB of cache is normal) HRNet-W40 and up fail to load with
"exceeds current available memory" while gigabytes are available. For the duration of the call
we let MindSpore's check use MemAvailable, the kernel's own estimate of what can be allocated
without swapping, so the guard still fires when memory really is short. Everything else
(CRC, sliced and segmented parameters, string entries) stays MindSpore's.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator

import mindspore as ms
from mindspore.train import serialization as _ms_serialization

# The private probe MindSpore 2.10 consults; absent in releases without the check, where the
# patch is skipped (reading the file needs no help there).
_PROBE = "_get_available_memory"
_lock = threading.Lock()


def available_memory(meminfo: str = "/proc/meminfo") -> int | None:
    """MemAvailable in bytes, or None where /proc/meminfo does not say (not Linux)."""
    try:
        with open(meminfo) as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024  # reported in kB
    except OSError:
        return None
    return None


@contextlib.contextmanager
def _memory_check_counts_page_cache() -> Iterator[None]:
    original = getattr(_ms_serialization, _PROBE, None)
    if original is None or available_memory() is None:
        yield
        return
    with _lock:
        setattr(_ms_serialization, _PROBE, available_memory)
        try:
            yield
        finally:
            setattr(_ms_serialization, _PROBE, original)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """mindspore.load_checkpoint(path): {name: Parameter or str}; a missing file is named."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    with _memory_check_counts_page_cache():
        return ms.load_checkpoint(path)

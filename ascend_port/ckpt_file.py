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

from ascend_port.errors import UserError

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


def describe(path: str) -> str:
    """What a file that is not a readable .ckpt looks like, from its first bytes."""
    with open(path, "rb") as f:
        head = f.read(16)
    if head.startswith(b"PK\x03\x04"):
        return "a zip archive (a PyTorch .pth/.pt? convert it with python -m models.torch_import)"
    if head[:1] == b"\x80":
        return "a Python pickle (a PyTorch .pth? convert it with python -m models.torch_import)"
    if len(head) >= 9 and head[8:9] == b"{":
        return "a safetensors file (name it .safetensors)"
    return "truncated or not a MindSpore checkpoint"


def load_checkpoint(path: str | os.PathLike) -> dict:
    """mindspore.load_checkpoint(path): {name: Parameter or str}. A missing, empty, truncated or
    foreign file is a UserError naming the file and what it is (MindSpore calls an empty file
    "empty after filter or specify" and a truncated one "corrupted")."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"checkpoint not found: {path}")
    if os.path.isdir(path):
        raise UserError(f"{path} is a directory, not a MindSpore .ckpt file")
    if os.path.getsize(path) == 0:
        raise UserError(f"{path} is empty (0 bytes), not a MindSpore checkpoint")
    try:
        with _memory_check_counts_page_cache():
            return ms.load_checkpoint(path)
    except ValueError as e:
        if "Failed to read the checkpoint file" not in str(e):
            raise
        raise UserError(f"{path} cannot be read as a MindSpore .ckpt: {describe(path)}") from None

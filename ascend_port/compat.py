"""Every private MindSpore API the port uses, in one place, with the version it was written for.

tests/test_ascend_port.py fails loudly (naming the attribute) when an upgrade removes one; the
callers here then fall back to MindSpore's own behaviour.

- `mindspore.train.serialization._get_available_memory`: MindSpore 2.10 refuses a .ckpt whose
  protobuf is larger than *free* memory, which it reads as sysconf(SC_AVPHYS_PAGES) = MemFree.
  MemFree leaves out the page cache the kernel gives back on demand, so on a node that has read
  its dataset (a few hundred MB free of 24 GB with 20 GB of cache is normal) HRNet-W40 and up
  failed with "exceeds current available memory" while gigabytes were available. While a .ckpt
  loads, MindSpore's check reads MemAvailable instead, the kernel's estimate of what can be
  allocated without swapping, so the guard still fires when memory really is short.
"""

from __future__ import annotations

import contextlib
import importlib
import threading
from collections.abc import Iterator

from mindspore.train import serialization as _ms_serialization

WRITTEN_FOR = {"mindspore": "2.10.0"}

# (module, attribute) of each private API used here.
PRIVATE_APIS = (("mindspore.train.serialization", "_get_available_memory"),)

_PROBE = "_get_available_memory"
_lock = threading.Lock()


def missing() -> list[str]:
    """The private APIs above that the installed MindSpore lacks ("module.attr" strings)."""
    return [
        f"{module}.{attr}"
        for module, attr in PRIVATE_APIS
        if not hasattr(importlib.import_module(module), attr)
    ]


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
def memory_check_counts_page_cache() -> Iterator[None]:
    """Within the block, MindSpore's .ckpt memory guard reads MemAvailable (see above)."""
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

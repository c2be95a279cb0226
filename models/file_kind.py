"""What a weights file is, from its first bytes, framework-free (both environments import it).

So that a wrong file given as weights is named for what it is (a PyTorch checkpoint, an empty or
truncated file, something else) instead of failing deep inside a loader.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile

SAFETENSORS = "safetensors"
PYTORCH = "pytorch"  # torch.save: a zip archive with data.pkl, or a legacy raw pickle
EMPTY = "empty"
UNKNOWN = "unknown"

_PICKLE_PROTOCOL_2_PLUS = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05")


def _safetensors_header_ok(path: str, size: int) -> bool:
    with open(path, "rb") as f:
        head = f.read(8)
        if len(head) < 8:
            return False
        (n,) = struct.unpack("<Q", head)
        if n == 0 or 8 + n > size or n > 100_000_000:
            return False
        try:
            header = json.loads(f.read(n))
        except ValueError:
            return False
    if not isinstance(header, dict):
        return False
    ends = [
        v["data_offsets"][1]
        for k, v in header.items()
        if k != "__metadata__" and isinstance(v, dict) and "data_offsets" in v
    ]
    return 8 + n + max(ends, default=0) <= size  # a truncated file ends before its last tensor


def kind(path: str | os.PathLike) -> str:
    """SAFETENSORS (complete), PYTORCH, EMPTY or UNKNOWN (anything else, a truncated
    safetensors included). The file must exist."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size == 0:
        return EMPTY
    if _safetensors_header_ok(path, size):
        return SAFETENSORS
    with open(path, "rb") as f:
        head = f.read(4)
    if head[:2] in _PICKLE_PROTOCOL_2_PLUS:
        return PYTORCH
    if head == b"PK\x03\x04" and zipfile.is_zipfile(path):
        with zipfile.ZipFile(path) as z:
            if any(n.endswith("/data.pkl") or n == "data.pkl" for n in z.namelist()):
                return PYTORCH
    return UNKNOWN


def describe(path: str | os.PathLike) -> str:
    """A few words for messages: 'a PyTorch checkpoint', 'an empty file', ..."""
    return {
        SAFETENSORS: "a safetensors file",
        PYTORCH: "a PyTorch checkpoint (torch.save)",
        EMPTY: "an empty file",
        UNKNOWN: "neither safetensors nor a PyTorch checkpoint (truncated or another format)",
    }[kind(path)]


def safetensors_metadata(path: str | os.PathLike) -> dict[str, str]:
    """The `__metadata__` of a safetensors file's header (model name, class count, ...)."""
    with open(os.fspath(path), "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        return dict(json.loads(f.read(n)).get("__metadata__") or {})

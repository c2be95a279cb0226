"""Reads a MindSpore .ckpt with mindspore.load_checkpoint, judging free memory as the kernel does
(ascend_port/compat.py says why MindSpore 2.10's own judgement refuses big files on busy nodes).
Everything else (CRC, sliced and segmented parameters, string entries) stays MindSpore's.
"""

from __future__ import annotations

import os

import mindspore as ms

from ascend_port import compat
from ascend_port.errors import UserError


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
        with compat.memory_check_counts_page_cache():
            return ms.load_checkpoint(path)
    except ValueError as e:
        if "Failed to read the checkpoint file" not in str(e):
            raise
        raise UserError(f"{path} cannot be read as a MindSpore .ckpt: {describe(path)}") from None

"""The workdir layout of the MindSpore side, as close to main.py's as MindSpore allows.

    W/config.json        the resolved config of the last training run
    W/metrics.jsonl      {"step", "split": "train"|"eval", ...} rows, one per step and split
    W/checkpoints/       <model>-s<step>.ckpt: weights + optimizer state, written atomically
    W/eval_result.json   --mode=eval
    W/export/            <model>.safetensors (canonical) and <model>.mindir / .onnx

MindSpore checkpoints are single .ckpt files (the JAX side's are orbax directories), so the two
sides do not resume from each other's checkpoints; weights cross as the exported .safetensors.
"""

from __future__ import annotations

import json
import os
import re
import tempfile

from ml_collections import ConfigDict

from ascend_port.errors import UserError
from train_lib import run_config

_CKPT_RE = re.compile(r"^(?P<model>.+)-s(?P<step>\d+)\.ckpt$")


def checkpoint_dir(workdir: str) -> str:
    return os.path.join(workdir, "checkpoints")


def checkpoint_path(workdir: str, model: str, step: int) -> str:
    return os.path.join(checkpoint_dir(workdir), f"{model}-s{step:08d}.ckpt")


def checkpoints(workdir: str) -> list[tuple[int, str, str]]:
    """(step, model, path) of every committed checkpoint, oldest first."""
    directory = checkpoint_dir(workdir)
    if not os.path.isdir(directory):
        return []
    found = []
    for name in os.listdir(directory):
        match = _CKPT_RE.match(name)
        if match:
            found.append((int(match["step"]), match["model"], os.path.join(directory, name)))
    return sorted(found)


def check(workdir: str, model: str, *, writing: bool) -> None:
    """Refuses, before anything is written, a workdir that is a file, that cannot be written
    (when `writing`) or that holds another model's checkpoints."""
    if writing:
        run_config.check_workdir(workdir)  # main.py's check: a file, or not writable
    elif os.path.exists(workdir) and not os.path.isdir(workdir):
        raise UserError(f"--workdir {workdir} is a file, not a directory; pass a directory")
    others = sorted({m for _, m, _ in checkpoints(workdir) if m != model})
    if others:
        raise UserError(
            f"--workdir {workdir} holds checkpoints of {', '.join(others)}, not {model}; "
            "use another workdir"
        )


def latest_checkpoint(workdir: str) -> tuple[int, str] | None:
    found = checkpoints(workdir)
    return (found[-1][0], found[-1][2]) if found else None


def write_text_atomic(path: str, text: str) -> None:
    """Write-then-rename: a reader (or a killed run) never sees half a file."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, path)


def write_config(config: ConfigDict, workdir: str) -> None:
    write_text_atomic(os.path.join(workdir, "config.json"), config.to_json_best_effort(indent=2))


def metrics_path(workdir: str) -> str:
    return os.path.join(workdir, "metrics.jsonl")


def drop_metrics_after(workdir: str, step: int) -> None:
    """A resumed run replays the steps after its checkpoint: their old rows go, so that
    metrics.jsonl keeps one row per step and split."""
    path = metrics_path(workdir)
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.read().splitlines()
    kept = []
    for line in lines:
        try:
            if json.loads(line)["step"] <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a torn last line of a killed run
    if len(kept) != len(lines):
        write_text_atomic(path, "".join(k + "\n" for k in kept))

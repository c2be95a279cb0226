"""Running main.py as a user would (a subprocess), and asserting on how it fails."""

from __future__ import annotations

import hashlib
import os
import pathlib
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_main(
    *args: str, timeout: int = 300, env: dict | None = None
) -> subprocess.CompletedProcess:
    """`python main.py ARGS` from the repository root on CPU."""
    env = {**os.environ, "JAX_PLATFORMS": "cpu", **(env or {})}
    return subprocess.run(
        [sys.executable, os.path.join(ROOT, "main.py"), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        cwd=ROOT,
    )


def assert_one_line_error(proc: subprocess.CompletedProcess, *needles: str, code: int = 2) -> str:
    """Exit `code`, no traceback, exactly one stderr line starting `error: ` holding every needle.

    Found by its form, not by a substring: other libraries' log lines may contain "error"."""
    assert proc.returncode == code, (proc.returncode, proc.stderr[-3000:])
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, proc.stderr[-3000:]
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def snapshot(directory: str | os.PathLike) -> dict[str, str]:
    """{relative path: sha256 (files) or 'dir'} of everything under `directory` ({} if absent)."""
    root = pathlib.Path(directory)
    if not root.exists():
        return {}
    out = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        out[rel] = "dir" if p.is_dir() else hashlib.sha256(p.read_bytes()).hexdigest()
    return out


def ascend_run_args(workdir: str | os.PathLike, data: str | os.PathLike, *extra: str) -> list[str]:
    """Flags after `python -m ascend_port` for the small MindSpore runs: hardnet39ds on a 3-class
    folder at 32 px, on CPU, in PyNative mode (no graph compiles for a few tiny steps)."""
    return [
        "--config",
        "configs/base.py",
        "--workdir",
        str(workdir),
        "--config.model.name=hardnet39ds",
        "--config.model.num_classes=3",
        "--config.data.image_size=32",
        f"--config.data.source=folder:{data}",
        "--config.ascend.device_target=CPU",
        "--config.ascend.mode=pynative",
        *extra,
    ]

"""Running main.py as a user would (a subprocess), and asserting on how it fails."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import pathlib
import select
import signal
import subprocess
import sys
import tempfile

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


@functools.cache
def _server() -> subprocess.Popen:
    """tests/main_server.py, started on first use; it ends when this process closes its stdin."""
    return subprocess.Popen(
        [sys.executable, os.path.join(ROOT, "tests", "main_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        bufsize=0,  # unbuffered: select() then sees every line the server has written
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
        cwd=ROOT,
    )


def run_main_forked(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    """`python main.py ARGS` as run_main runs it, in a fork of tests/main_server.py (which has
    imported main.py and its libraries): a fresh process all the same, with its own absl flags,
    exit code, stdout and stderr, for ~1.2 CPU-s less. The environment is this process's (a
    variable that jax reads at import, like JAX_NUM_CPU_DEVICES, needs run_main)."""
    server = _server()
    with tempfile.TemporaryDirectory() as d:
        out, err = os.path.join(d, "stdout"), os.path.join(d, "stderr")
        server.stdin.write(json.dumps([list(args), out, err]).encode() + b"\n")
        pid = int(server.stdout.readline())
        if not select.select([server.stdout], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            server.stdout.readline()
            raise subprocess.TimeoutExpired(["main.py", *args], timeout)
        code = int(server.stdout.readline())
        return subprocess.CompletedProcess(
            ["main.py", *args], code, pathlib.Path(out).read_text(), pathlib.Path(err).read_text()
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

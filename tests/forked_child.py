"""The child half of the tests' fork servers (tests/main_server.py for main.py,
tests/ascend_side/cli_batch.py for the MindSpore side): one command-line run in a forked child of
an interpreter that has already imported the heavy modules, with stdout and stderr on files and
the exit status the interpreter would give it. Framework-free: it runs in either environment."""

from __future__ import annotations

import os
import sys
import traceback
from collections.abc import Callable
from typing import NoReturn


def exit_status(e: SystemExit) -> int:
    """What the interpreter makes of SystemExit(code) (a message: printed, status 1)."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    print(e.code, file=sys.stderr)
    return 1


def run_and_exit(entry: Callable[[], object], out_path: str, err_path: str) -> NoReturn:
    """Runs `entry` (in the child, after fork) with stdin empty and stdout/stderr on the two
    files, then ends the child as the interpreter would end (an uncaught exception prints its
    traceback and exits 1). Never returns."""
    code = 1
    try:
        for fd, path, flags in (
            (0, os.devnull, os.O_RDONLY),
            (1, out_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
            (2, err_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC),
        ):
            target = os.open(path, flags)
            os.dup2(target, fd)
            os.close(target)
        try:
            entry()
            code = 0
        except SystemExit as e:
            code = exit_status(e)
        except BaseException:  # noqa: BLE001  (as the interpreter reports an uncaught one)
            traceback.print_exc()
            code = 1
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except Exception:  # noqa: BLE001, S110  (a closed stream: nothing left to flush)
                pass
        os._exit(code)

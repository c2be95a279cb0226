"""Runs `python main.py ARGS` many times from one interpreter that has imported main.py's libraries
(tests/cli.run_main_forked): every run is a fork of it, with its own absl flags, exit code and
file descriptors, minus the interpreter start and the imports (~1.2 CPU-s a run).

    python tests/main_server.py     # then one JSON line per run on stdin: [args, stdout, stderr]

For each request it prints the child's pid, then its exit code (as the interpreter would give it),
one line each.
"""

from __future__ import annotations

import json
import os
import sys
import traceback

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

# What main.py imports before it validates the config (jax, flax, orbax, the train, eval and
# export code; not TensorFlow, which the data pipeline imports when it first reads data). jax's
# backends start in each child, never here: a fork after they start could deadlock.
from absl import app  # noqa: E402

import main  # noqa: E402
import train_lib.evaluate  # noqa: E402, F401
import train_lib.export  # noqa: E402, F401
import train_lib.train  # noqa: E402, F401


def _child(args: list[str], out: str, err: str) -> int:
    """main.py's `__main__` block with stdout and stderr on the files `out` and `err`."""
    for fd, path in ((1, out), (2, err)):
        target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
        os.dup2(target, fd)
        os.close(target)
    stdin = os.open(os.devnull, os.O_RDONLY)
    os.dup2(stdin, 0)
    os.close(stdin)
    sys.argv = [os.path.join(ROOT, "main.py"), *args]
    try:
        app.run(main.main, flags_parser=main._parse_flags)
        return 0
    except SystemExit as e:
        if e.code is None or isinstance(e.code, int):
            return e.code or 0
        print(e.code, file=sys.stderr)
        return 1
    except BaseException:  # noqa: BLE001  (as the interpreter reports an uncaught exception)
        traceback.print_exc()
        return 1


def serve() -> None:
    os.chdir(ROOT)
    for line in sys.stdin:
        args, out, err = json.loads(line)
        pid = os.fork()
        if pid == 0:
            code = _child(args, out, err)
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve()

"""Runs `python main.py ARGS` many times from one interpreter that has imported main.py's libraries
(tests/cli.run_main_forked): every run is a fork of it, with its own absl flags, exit code and
file descriptors, minus the interpreter start and the imports (~1.2 CPU-s a run).

    python tests/main_server.py     # then one JSON line per run on stdin: [args, stdout, stderr]

For each request it prints the child's pid, then its exit code (as the interpreter would give it),
one line each.
"""

from __future__ import annotations

import functools
import json
import os
import sys

import forked_child  # tests/, this script's folder

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


def _main_py(args: list[str]) -> None:
    """main.py's `__main__` block with `args`."""
    sys.argv = [os.path.join(ROOT, "main.py"), *args]
    app.run(main.main, flags_parser=main._parse_flags)


def serve() -> None:
    os.chdir(ROOT)
    for line in sys.stdin:
        args, out, err = json.loads(line)
        pid = os.fork()
        if pid == 0:
            forked_child.run_and_exit(functools.partial(_main_py, args), out, err)
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve()

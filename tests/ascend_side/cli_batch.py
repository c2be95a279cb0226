"""Many command-line runs for the price of one interpreter start: each run is a forked child of
a process that has already imported the heavy modules (mindspore, or jax and TensorFlow).

    python tests/ascend_side/cli_batch.py RUNS.json OUT.json

RUNS.json: {"preload": [module, ...], "runs": {name: {"module": "ascend_port"} or
{"path": "main.py"}, plus "argv": [...]}}. A child runs its entry as `python -m MODULE ARGV`
(or `python PATH ARGV`) does, as __main__, with its own stdout and stderr, and ends with the
exit status Python would give it (an uncaught exception prints its traceback and exits 1). The
parent never parses flags nor touches a device, so every child starts from a fresh absl and
framework state. OUT.json: {name: {"returncode", "stdout", "stderr"}}. What the child inherits
from the process boundary it does not cross (the interpreter start, the imports) is what the few
true subprocess tests keep checking. Runs in either environment: numpy-free, framework-free.
"""

from __future__ import annotations

import functools
import importlib
import json
import os
import runpy
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(1, os.path.join(ROOT, "tests"))
import forked_child  # noqa: E402  (tests/; then off the path the runs see)

sys.path.pop(1)


def _run_entry(run: dict) -> None:
    """`python -m MODULE ARGV` or `python PATH ARGV`, from the repository root."""
    os.chdir(ROOT)
    if "module" in run:
        sys.argv = [run["module"], *run["argv"]]
        sys.path[0] = ROOT  # `python -m` puts the working directory first
        sys.modules.pop(run["module"], None)  # runpy warns about a preloaded one
        runpy.run_module(run["module"], run_name="__main__", alter_sys=True)
    else:
        path = os.path.join(ROOT, run["path"])
        sys.argv = [path, *run["argv"]]
        sys.path[0] = os.path.dirname(path)
        runpy.run_path(path, run_name="__main__")


def run_all(runs: dict, preload: list[str]) -> dict:
    """{name: {"returncode", "stdout", "stderr"}} of every run, one forked child at a time."""
    for module in preload:
        importlib.import_module(module)
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, run in runs.items():
            out_path, err_path = os.path.join(tmp, "out"), os.path.join(tmp, "err")
            sys.stdout.flush()
            sys.stderr.flush()
            pid = os.fork()
            if pid == 0:
                forked_child.run_and_exit(functools.partial(_run_entry, run), out_path, err_path)
            _, status = os.waitpid(pid, 0)
            with open(out_path, errors="replace") as f, open(err_path, errors="replace") as g:
                out[name] = {
                    "returncode": os.waitstatus_to_exitcode(status),
                    "stdout": f.read(),
                    "stderr": g.read(),
                }
    return out


def main() -> None:
    runs_path, out_path = sys.argv[1:]
    with open(runs_path) as f:
        spec = json.load(f)
    result = run_all(spec["runs"], spec.get("preload", []))
    with open(out_path, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    main()

"""Runs short trainings in a fresh process (device count is fixed at jax import), each exported.

    JAX_NUM_CPU_DEVICES=8 python tests/train_subprocess.py WORKDIR key=value ... [-- WORKDIR ...]

Runs separated by `--` train one after the other in this process: the interpreter start, the
TensorFlow and jax imports and the programs compiled by the first run serve the next ones.
Prints one JSON line per run: the final eval result and the exported weights path.
"""

from __future__ import annotations

import ast
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def config_from(overrides: list[str]):
    """The demo config with `key=value` overrides."""
    from configs import demo

    return override(demo.get_config(), overrides)


def override(config, overrides: list[str]):
    """`config` with `key=value` overrides (values parsed as Python literals if they are)."""
    for item in overrides:
        key, value = item.split("=", 1)
        node = config
        *parents, leaf = key.split(".")
        for p in parents:
            node = node[p]
        try:
            value = ast.literal_eval(value)
        except (ValueError, SyntaxError):
            pass
        node[leaf] = value
    return config


def split_runs(argv: list[str]) -> list[tuple[str, list[str]]]:
    """[(workdir, overrides)] of `WORKDIR key=value ... [-- WORKDIR key=value ...]`."""
    runs, current = [], []
    for arg in [*argv, "--"]:
        if arg == "--":
            runs.append((current[0], current[1:]))
            current = []
        else:
            current.append(arg)
    return runs


def main() -> None:
    import jax

    from train_lib import export, train

    for workdir, overrides in split_runs(sys.argv[1:]):
        config = config_from(overrides)
        result = train.run(config, workdir)
        path = export.run(config, workdir)
        print(json.dumps({"result": result, "export": path, "devices": jax.device_count()}))
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Runs a short training in a fresh process (device count is fixed at jax import), then exports.

    JAX_NUM_CPU_DEVICES=8 python tests/train_subprocess.py WORKDIR key=value ...

Prints one JSON line: the final eval result and the exported weights path.
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


def main() -> None:
    workdir, overrides = sys.argv[1], sys.argv[2:]
    from train_lib import export, train

    config = config_from(overrides)
    result = train.run(config, workdir)
    path = export.run(config, workdir)
    import jax

    print(json.dumps({"result": result, "export": path, "devices": jax.device_count()}))


if __name__ == "__main__":
    main()

"""Short trainings of several configs in ONE interpreter, as the side's command line runs them.

    python tests/recipe_steps.py jax|mindspore RUNS.json OUT.json

RUNS.json: {name: {"config": config file, "workdir": dir, "overrides": ["key=value", ...]}}.
Each run goes through what `python main.py` (JAX) or `python -m ascend_port` (MindSpore) calls
after parsing its flags; one interpreter start and one framework import serve every run. OUT.json
gets {name: ""} for a run that finished, else the end of its traceback, so that a failing run
does not hide the others. Runs in either environment: no jax or mindspore import at the top.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
import time
import traceback

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from tests.train_subprocess import override  # noqa: E402


def load_config(path: str):
    """get_config() of a config file, locked as main.py's --config flag locks it."""
    spec = importlib.util.spec_from_file_location(f"_config_{abs(hash(path))}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    config = module.get_config()
    config.lock()  # an override of a key that does not exist fails, as on the command line
    return config


def _train_jax(config, workdir: str) -> None:
    from train_lib import runtime, train

    runtime.start(workdir, distributed=None, distributed_timeout=300)
    train.run(config, workdir)


def _train_mindspore(config, workdir: str) -> None:
    from ascend_port import checks, runtime, train

    checks.validate(config, mode="train")
    runtime.setup(config.ascend.device_target, config.ascend.mode)
    train.train(config, workdir, distributed=False, allow_config_change=False)


def main() -> None:
    side, runs_path, out_path = sys.argv[1:]
    train = {"jax": _train_jax, "mindspore": _train_mindspore}[side]
    with open(runs_path) as f:
        runs = json.load(f)
    out = {}
    for name, run in runs.items():
        start, cpu = time.monotonic(), time.process_time()
        try:
            config = override(load_config(run["config"]), run["overrides"])
            train(config, run["workdir"])
            out[name] = ""
        except BaseException:  # noqa: BLE001  (SystemExit included: reported, the next one runs)
            out[name] = traceback.format_exc()[-4000:]
        took, cpu = time.monotonic() - start, time.process_time() - cpu
        status = "failed" if out[name] else "ok"
        print(f"{name}: {status} in {took:.1f} s ({cpu:.1f} CPU-s)", flush=True)
    with open(out_path, "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main()

"""The workdir's config files: is the workdir usable, and what config did its checkpoints come from.

`<workdir>/config.json` is the resolved config of the latest run (for people);
`<workdir>/checkpoints/config.json` is the config the checkpoints were trained with, written once
by the run that created them, and compared with a resumed run's config.
"""

from __future__ import annotations

import errno
import json
import os
import tempfile
from typing import Any

from ml_collections import ConfigDict

from train_lib.errors import UserError


def check_workdir(workdir: str) -> None:
    """Refuses a --workdir that is a file or that this process cannot write, before anything runs."""
    path = os.path.abspath(workdir)
    if os.path.exists(path) and not os.path.isdir(path):
        raise UserError(f"--workdir {workdir} is a file, not a directory; pass a directory")
    existing = path
    while not os.path.exists(existing):  # the nearest existing ancestor must take new entries
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        raise UserError(f"--workdir {workdir}: {existing} is a file, not a directory")
    try:  # os.access ignores read-only mounts and says yes to root; a real probe does not
        fd, probe = tempfile.mkstemp(prefix=".write-probe-", dir=existing)
        os.close(fd)
        os.remove(probe)
    except OSError as e:
        reason = os.strerror(e.errno) if e.errno else str(e)
        if e.errno == errno.ENOSPC:
            reason = "no space left on device"
        raise UserError(f"--workdir {workdir} is not writable ({existing}: {reason})") from None


def write(config: ConfigDict, workdir: str) -> None:
    """Writes <workdir>/config.json, the resolved config of this run."""
    os.makedirs(workdir, exist_ok=True)
    with open(os.path.join(workdir, "config.json"), "w") as f:
        f.write(config.to_json_best_effort(indent=2))


# Keys that change how a run is watched, stored or fed, not what its checkpoints converge to;
# every other key (model, data, batch size, schedule, optimizer, seed, parallel mode, and any key
# added later) must match the stored config to resume.
NOT_RESULT_CHANGING = (
    "init_from",  # read only at step 0
    "train.stop_after_steps",
    "train.log_every_steps",
    "train.log_every_epochs",
    "train.eval_every_steps",
    "train.eval_every_epochs",
    "train.checkpoint_every_steps",
    "train.checkpoint_every_epochs",
    "train.keep_checkpoints",
    "train.eval_batch_size",
    "train.tensorboard",
    "data.data_dir",
    "data.manual_dir",
    "data.cache",
    "data.num_workers",
    "data.prefetch",
    "ascend",
    "benchmark",
    "export_ema",  # which weights --mode=export/eval read, not what training does
)
STORED_NAME = "config.json"  # next to the checkpoints: the config they were trained with


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict):
        out = {}
        for key, value in tree.items():
            out.update(_flatten(value, f"{prefix}{key}."))
        return out
    return {prefix[:-1]: tree}


def _as_plain(config: ConfigDict) -> dict[str, Any]:
    return json.loads(config.to_json_best_effort())


def _ignored(key: str) -> bool:
    return any(key == k or key.startswith(k + ".") for k in NOT_RESULT_CHANGING)


def result_changes(stored: dict[str, Any], config: ConfigDict) -> list[str]:
    """'key: stored -> new' for each result-changing key that differs (sorted)."""
    old, new = _flatten(stored), _flatten(_as_plain(config))
    return [
        f"{k}: {old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r}"
        for k in sorted(old.keys() | new.keys())
        if not _ignored(k) and old.get(k) != new.get(k)
    ]


def check_resume(config: ConfigDict, checkpoint_dir: str, *, allow_change: bool) -> None:
    """Refuses to resume checkpoints trained with a result-changing different config, unless
    `allow_change` (the user's explicit --allow_config_change)."""
    path = os.path.join(checkpoint_dir, STORED_NAME)
    if not os.path.exists(path):  # checkpoints written before configs were stored with them
        return
    with open(path) as f:
        changes = result_changes(json.load(f), config)
    if changes and not allow_change:
        raise UserError(
            f"{checkpoint_dir} holds checkpoints trained with another config ({'; '.join(changes)}); "
            "use another --workdir, or pass --allow_config_change to resume with the new values"
        )


def store(config: ConfigDict, checkpoint_dir: str) -> None:
    """Keeps this run's config next to its checkpoints (atomically: a crash leaves the old one)."""
    os.makedirs(checkpoint_dir, exist_ok=True)
    path = os.path.join(checkpoint_dir, STORED_NAME)
    with open(path + ".tmp", "w") as f:
        f.write(config.to_json_best_effort(indent=2))
    os.replace(path + ".tmp", path)

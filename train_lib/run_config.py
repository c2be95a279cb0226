"""The workdir's config files: is the workdir usable, and what config did its checkpoints come from.

`<workdir>/config.json` is the resolved config of the latest run (for people);
`<workdir>/checkpoints/config.json` is the config the checkpoints were trained with, written once
by the run that created them, and compared with a resumed run's config.
"""

from __future__ import annotations

import errno
import os
import tempfile

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

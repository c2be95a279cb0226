"""jax.distributed with a deadline: a process that never joins, or dies mid-run, makes every
other process exit non-zero within the timeout with one line naming it, instead of hanging."""

from __future__ import annotations

import atexit
import os
import re
import sys
import threading
import time

import jax
from absl import logging

from models import compat
from train_lib.errors import UserError

_PREFIX = "hhl_heartbeat/"
_DONE = "done"


class PeerLostError(UserError):
    """Another process of the run never joined or stopped answering."""


def _tasks(text: str) -> str:
    found = sorted({int(t) for t in re.findall(r"task:(\d+)", text)})
    return ", ".join(str(t) for t in found)


def describe(error: BaseException, timeout_s: int) -> str:
    """One line for an error of the distributed runtime, naming the processes it mentions."""
    text = " ".join(str(error).split())
    tasks = _tasks(text)
    who = f"process {tasks}" if tasks else "another process"
    return (
        f"{who} of this run never joined or stopped answering (--distributed_timeout="
        f"{timeout_s} s); this process {jax.process_index()} stops ({text[:240]})"
    )


def initialize(*, timeout_s: int, **kwargs) -> None:
    """jax.distributed.initialize that waits `timeout_s` for all processes to join, then a
    watchdog thread that ends this process (one `error:` line, exit 2) when another one has sent
    no heartbeat for `timeout_s`."""
    try:
        # The runtime's own heartbeat deadline aborts the process with a stack dump; it is set
        # past ours so the watchdog below names the lost process first.
        jax.distributed.initialize(
            initialization_timeout=timeout_s,
            heartbeat_timeout_seconds=2 * timeout_s,
            shutdown_timeout_seconds=timeout_s,
            **kwargs,
        )
    except Exception as e:  # noqa: BLE001  (the runtime raises XlaRuntimeError and others)
        raise PeerLostError(describe(e, timeout_s)) from None
    client = compat.distributed_client()
    if client is None:
        logging.warning(
            "this jax has no distributed key-value client: a process lost mid-run "
            "ends the others by the runtime's abort"
        )
        return
    _start_watchdog(client, timeout_s)


def _lost(process: int, timeout_s: int) -> None:
    """Ends this process at once with one line (from a thread, so no exception would do)."""
    print(
        f"error: process {process} of this run stopped answering (no heartbeat for "
        f"{timeout_s} s, --distributed_timeout={timeout_s}); this process "
        f"{jax.process_index()} stops",
        file=sys.stderr,
        flush=True,
    )
    os._exit(2)


def _watch(client, timeout_s: int, stop: threading.Event) -> None:
    """Writes this process's heartbeat counter to the key-value store and ends the process when
    a peer's counter has not moved for `timeout_s` (local clock: hosts' clocks may differ). A
    peer that wrote "done" is exiting normally and is left to the runtime's shutdown barrier."""
    me, count = jax.process_index(), 0
    seen = {p: ("", time.monotonic()) for p in range(jax.process_count()) if p != me}
    answered = time.monotonic()
    while not stop.wait(max(timeout_s / 4, 0.5)):
        now = time.monotonic()
        try:
            count += 1
            client.key_value_set(f"{_PREFIX}{me}", str(count), allow_overwrite=True)
            beats = dict(client.key_value_dir_get(_PREFIX))
            answered = now
        except Exception:  # noqa: BLE001  (the coordinator, process 0, is gone)
            if now - answered > timeout_s:
                _lost(0, timeout_s)
            continue
        for p, (value, since) in seen.items():
            new = beats.get(f"{_PREFIX}{p}", value)
            if new != value:
                seen[p] = (new, now)
            elif new != _DONE and now - since > timeout_s:
                _lost(p, timeout_s)
    try:
        client.key_value_set(f"{_PREFIX}{me}", _DONE, allow_overwrite=True)
    except Exception:  # noqa: BLE001,S110  (exiting anyway; the runtime reports a lost peer)
        pass


def _start_watchdog(client, timeout_s: int) -> None:
    stop = threading.Event()
    thread = threading.Thread(
        target=_watch, args=(client, timeout_s, stop), daemon=True, name="multihost-watchdog"
    )
    thread.start()

    def _finish() -> None:  # runs before jax's own atexit shutdown (registered earlier)
        stop.set()
        thread.join(timeout=timeout_s)

    atexit.register(_finish)

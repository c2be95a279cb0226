"""jax.distributed with a deadline: a process that never joins, or dies mid-run, makes every
other process exit non-zero within the timeout with one line naming it, instead of hanging."""

from __future__ import annotations

import re

import jax

from train_lib.errors import UserError


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
    return (f"{who} of this run never joined or stopped answering (--distributed_timeout="
            f"{timeout_s} s); this process {jax.process_index()} stops ({text[:240]})")


def initialize(*, timeout_s: int, **kwargs) -> None:
    """jax.distributed.initialize that waits `timeout_s` for all processes to join and declares
    a process dead after `timeout_s` without a heartbeat."""
    try:
        jax.distributed.initialize(initialization_timeout=timeout_s,
                                   heartbeat_timeout_seconds=timeout_s,
                                   shutdown_timeout_seconds=timeout_s, **kwargs)
    except Exception as e:  # noqa: BLE001  (the runtime raises XlaRuntimeError and others)
        raise PeerLostError(describe(e, timeout_s)) from None

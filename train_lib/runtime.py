"""The process-wide JAX set-up every mode starts with: multi-host initialisation, the persistent
compilation cache next to the workdir, and one log line naming the devices."""

from __future__ import annotations

import os
from typing import Any

import jax
from absl import logging

from train_lib import multihost


def start(
    workdir: str | None, *, distributed: dict[str, Any] | None, distributed_timeout: int
) -> None:
    """`distributed`: jax.distributed.initialize's arguments (None: a single process). With a
    workdir, compiled programs are cached in <its parent>/.jax_cache (unless
    JAX_COMPILATION_CACHE_DIR names a cache), so reruns skip the XLA compile."""
    if distributed is not None:
        multihost.initialize(timeout_s=distributed_timeout, **distributed)
    if workdir is not None and not jax.config.jax_compilation_cache_dir:
        cache = os.path.join(os.path.dirname(os.path.abspath(workdir)), ".jax_cache")
        jax.config.update("jax_compilation_cache_dir", cache)
    logging.info(
        "process %d/%d, %d devices (%s)",
        jax.process_index(),
        jax.process_count(),
        jax.device_count(),
        jax.devices()[0].platform,
    )

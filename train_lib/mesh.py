"""Device mesh, shardings and host -> device transfer of per-process batches."""

from __future__ import annotations

import collections
from collections.abc import Iterable, Iterator

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding
from jax.sharding import PartitionSpec as P

DATA_AXIS = "data"


def make_mesh() -> Mesh:
    """One `data` axis over every device of every process. Auto axes: classic GSPMD semantics
    on every jax version (jax.make_mesh defaults to Explicit axes from 0.10)."""
    return jax.make_mesh(
        (jax.device_count(),), (DATA_AXIS,), axis_types=(jax.sharding.AxisType.Auto,)
    )


def data_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P(DATA_AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())


def to_global(batch: dict[str, np.ndarray], sharding: NamedSharding) -> dict[str, jax.Array]:
    """Every process contributes its local slice; the result is one global batch array."""
    return {k: jax.make_array_from_process_local_data(sharding, v) for k, v in batch.items()}


def prefetch_to_device(
    batches: Iterable[dict[str, np.ndarray]], sharding: NamedSharding, size: int = 2
) -> Iterator[dict[str, jax.Array]]:
    """Keeps `size` batches in flight: transfers are async, so the next batch copies while the
    current step runs."""
    queue: collections.deque = collections.deque()
    for batch in batches:
        queue.append(to_global(batch, sharding))
        if len(queue) > max(size - 1, 0):
            yield queue.popleft()
    while queue:
        yield queue.popleft()


def fetch_replicated(tree):
    """Host copies of replicated arrays. jax.device_get refuses arrays that span processes; every
    process holds a full replica, so reading the local one is exact and needs no communication."""
    return jax.tree.map(lambda x: np.asarray(x.addressable_data(0)), tree)

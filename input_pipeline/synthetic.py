"""Random uint8 batches for throughput benchmarks: numpy only, so no TensorFlow start-up or decode.

Training yields one pre-generated batch forever (the data are meaningless anyway); evaluation
yields the same padded layout a real split would, so the masked-count check still runs.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np


def num_local(num_examples: int, process_index: int, process_count: int) -> int:
    """Examples of a split that process `process_index` holds (strided sharding)."""
    return len(range(process_index, num_examples, process_count))


def _batch(size: int, image_size: int, num_classes: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {
        "image": rng.integers(0, 256, (size, image_size, image_size, 3), dtype=np.uint8),
        "label": rng.integers(0, num_classes, (size,), dtype=np.int32),
    }


def train_batches(
    *, local_batch: int, image_size: int, num_classes: int, seed: int, process_index: int
) -> Iterator[dict[str, np.ndarray]]:
    """The same random batch every step (different per process)."""
    batch = _batch(local_batch, image_size, num_classes, seed * 1009 + process_index)
    while True:
        yield dict(batch)


def eval_batches(
    *,
    num_examples: int,
    global_batch: int,
    local_batch: int,
    image_size: int,
    num_classes: int,
    process_index: int,
    process_count: int,
) -> Iterator[dict[str, np.ndarray]]:
    """ceil(num_examples / global_batch) random batches whose masks cover this process's share."""
    batch = _batch(local_batch, image_size, num_classes, 7919 + process_index)
    remaining = num_local(num_examples, process_index, process_count)
    for _ in range(math.ceil(num_examples / global_batch)):
        mask = np.arange(local_batch) < remaining
        remaining -= int(mask.sum())
        yield {**batch, "mask": mask}

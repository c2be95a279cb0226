"""Training order that a resumed run continues mid-epoch.

MindSpore's own shuffle draws each epoch's order from a generator it never exposes, so a run
restarted from a step checkpoint cannot ask it for "epoch e from image k on". Here the order is
an endless stream: epoch e is a numpy permutation seeded by (seed, e), split across ranks, and
the sampler reads the stream from this rank's position of the checkpoint's step on. Each pass
MindSpore asks for is one epoch's length of that stream, so a resumed run's passes straddle the
epoch boundaries (in sink mode too, where every pass must be full) and it reads exactly the
images, in exactly the order, of an uninterrupted run. (The random crop and flip draws come
from MindSpore's pipeline generator and restart with the run.)
"""

from __future__ import annotations

import mindspore.dataset as msds
import numpy as np


def epoch_order(num_images: int, *, seed: int, epoch: int, rank: int, group_size: int):
    """The indices rank `rank` reads in epoch `epoch` (all ranks: equal length, disjoint)."""
    perm = np.random.default_rng([seed, epoch]).permutation(num_images)
    per_rank = num_images // group_size
    return perm[rank::group_size][:per_rank]


class ResumableShuffle(msds.Sampler):
    """Each pass yields the next len(self) indices of this rank's stream, from `start` (the
    number of images this rank had read at the checkpoint) on."""

    def __init__(
        self, num_images: int, *, seed: int, rank: int = 0, group_size: int = 1, start: int = 0
    ):
        # MindSpore's Sampler.__init__ calls len(self): set what __len__ reads first.
        self.num_images, self.seed, self.rank, self.group_size = num_images, seed, rank, group_size
        self.position = start
        self._cache: tuple[int, np.ndarray] | None = None
        super().__init__()

    def __len__(self) -> int:
        return self.num_images // self.group_size

    def _order(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            order = epoch_order(
                self.num_images,
                seed=self.seed,
                epoch=epoch,
                rank=self.rank,
                group_size=self.group_size,
            )
            self._cache = (epoch, order)
        return self._cache[1]

    def __iter__(self):
        per_pass = len(self)
        for _ in range(per_pass):
            epoch, i = divmod(self.position, per_pass)
            self.position += 1
            yield int(self._order(epoch)[i])

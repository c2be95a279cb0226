"""Training order that a resumed run can continue mid-epoch.

MindSpore's own shuffle draws each epoch's order from a generator it never exposes, so a run
restarted from a step checkpoint cannot ask it for "epoch e from image k on". Here the order of
epoch e is a numpy permutation seeded by (seed, e), split across ranks, and the first epoch of
a resumed run starts `skip` images in: the resumed run sees exactly the images, in exactly the
order, an uninterrupted run would have seen. (The random crop and flip draws still come from
MindSpore's per-pipeline generator and restart with the run.)
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
    """Yields epoch_order for epoch start_epoch, start_epoch + 1, ... (one per pass), skipping
    the first `skip` indices of the first pass."""

    def __init__(
        self,
        num_images: int,
        *,
        seed: int,
        rank: int = 0,
        group_size: int = 1,
        start_epoch: int = 0,
        skip: int = 0,
    ):
        # MindSpore's Sampler.__init__ calls len(self): set what __len__ reads first.
        self.num_images, self.seed, self.rank, self.group_size = num_images, seed, rank, group_size
        self.epoch, self.skip = start_epoch, skip
        super().__init__()

    def __len__(self) -> int:
        return self.num_images // self.group_size

    def __iter__(self):
        order = epoch_order(
            self.num_images,
            seed=self.seed,
            epoch=self.epoch,
            rank=self.rank,
            group_size=self.group_size,
        )
        order, self.skip, self.epoch = order[self.skip :], 0, self.epoch + 1
        yield from (int(i) for i in order)

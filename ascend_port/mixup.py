"""Mixup / cutmix in the MindSpore batch pipeline (rules: recipes.mixup, timm's semantics).

`BatchMixup` is a `per_batch_map` for `Dataset.batch`: it mixes the normalised NCHW batch and
turns the labels into soft float32 targets, label smoothing included, so the loss is
`losses.SoftTargetCrossEntropy`. Draws come from a numpy generator seeded by (seed, rank, epoch,
batch number), so a batch mixes the same way whatever the worker that builds it.
"""

from __future__ import annotations

import numpy as np

from train_lib.recipes import mixup as rule


def draws(rng: np.random.Generator, spec: rule.MixupSpec, batch: int) -> rule.Draws:
    """numpy draws for one batch (Beta(alpha, alpha) only for alphas that are set)."""
    n = rule.num_draws(spec.mode, batch)

    def beta(alpha: float) -> np.ndarray:
        return rng.beta(alpha, alpha, n).astype(np.float32) if alpha > 0 else np.ones(n, np.float32)

    apply, switch = rng.random(n), rng.random(n)
    lam_mixup, lam_cutmix = beta(spec.mixup_alpha), beta(spec.cutmix_alpha)
    return rule.Draws(
        apply=apply,
        switch=switch,
        lam_mixup=lam_mixup,
        lam_cutmix=lam_cutmix,
        centre_y=rng.random(n),
        centre_x=rng.random(n),
    )


def mix(
    rng: np.random.Generator,
    spec: rule.MixupSpec,
    images: np.ndarray,
    labels: np.ndarray,
    num_classes: int,
    smoothing: float,
) -> tuple[np.ndarray, np.ndarray]:
    """(mixed NCHW float32 images, soft float32 targets (B, num_classes))."""
    mixed, targets, _ = rule.mix(
        np,
        spec,
        draws(rng, spec, len(images)),
        images,
        labels,
        num_classes,
        smoothing,
        channels_last=False,
    )
    return mixed.astype(np.float32), targets.astype(np.float32)


class BatchMixup:
    """per_batch_map(images, labels, batch_info) -> (mixed images, soft targets)."""

    def __init__(
        self, spec: rule.MixupSpec, num_classes: int, smoothing: float, *, seed: int, rank: int = 0
    ):
        self.spec, self.num_classes, self.smoothing = spec, num_classes, smoothing
        self.seed, self.rank = seed, rank

    def __call__(self, images: list, labels: list, batch_info) -> tuple[np.ndarray, np.ndarray]:
        key = (self.seed, self.rank, batch_info.get_epoch_num(), batch_info.get_batch_num())
        rng = np.random.default_rng(key)
        return mix(
            rng, self.spec, np.stack(images), np.asarray(labels), self.num_classes, self.smoothing
        )

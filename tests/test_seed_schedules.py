"""Each seed config's learning rate against the seed's own schedule, at the seed's global batch.

The three MindSpore model-zoo recipes (mindspore-ai/models research/cv) build a per-step lr array
for the steps per epoch of one device at 8 devices (the global batch is 8 x the per-device one).
Their generators are rewritten here from the zoo's code, independently of train_lib/lr_schedule.py
(which both sides use: optax through train_lib/optim.py, MindSpore as a numpy array), and both must give the same lr at the seed's global batch; at
another batch the lr per image at the same point of training must stay the seed's.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from configs import hardnet85, hlg_mobile_zoo, hrnet_w48
from train_lib import lr_schedule as ms_schedule
from train_lib import optim

IMAGENET_TRAIN = 1_281_167


def hardnet_zoo(i: int) -> float:
    """research/cv/hardnet src/lr_scheduler.py get_lr(lr_decay_mode='cosine') with src/config.py
    (lr_init 0.05, lr_max 0.1, warmup 5, 150 epochs) at 625 steps per epoch (256 x 8)."""
    spe, lr_init, lr_max = 625, 0.05, 0.1
    total, warmup = spe * 150, spe * 5
    decay = total - warmup
    if i < warmup:
        return lr_init + (lr_max - lr_init) / warmup * (i + 1)
    linear = (total - i) / decay
    cosine = 0.5 * (1 + math.cos(math.pi * 2 * 0.47 * i / decay))
    return lr_max * (linear * cosine + 0.00001)


def hrnet_zoo(i: int) -> float:
    """research/cv/HRNetW48_cls src/utils.py get_linear_lr(0.01, 120, spe, 1e-4, 1e-5, 2) at
    10009 steps per epoch (16 x 8)."""
    spe, base_lr, lr_init, lr_end = 10009, 0.01, 1e-4, 1e-5
    total, warmup = spe * 120, spe * 2
    if i < warmup:
        return lr_init + (base_lr - lr_init) * i / warmup
    return base_lr - (base_lr - lr_end) * (i - warmup) / (total - warmup)


def hlg_zoo(i: int) -> float:
    """research/cv/hlg src/lr_generator.py get_lr(lr_decay_mode='cosine') with
    config/hlg_config.yml (lr_init 0, lr_max 1e-3, warmup 20, 300 epochs) at 1251 steps per epoch
    (128 x 8)."""
    spe, lr_init, lr_max = 1251, 0.0, 1e-3
    total, warmup = spe * 300, int(spe * 20)
    if i < warmup:
        return lr_init + (lr_max - lr_init) / warmup * (i + 1)
    return lr_max * (1 + math.cos(math.pi * (i + 1 - warmup) / (total - warmup))) / 2


# config module -> (seed generator, seed global batch, seed steps per epoch, epochs)
SEEDS = {
    "hardnet85": (hardnet85, hardnet_zoo, 2048, 625, 150, 5),
    "hrnet_w48": (hrnet_w48, hrnet_zoo, 128, 10009, 120, 2),
    "hlg_mobile_zoo": (hlg_mobile_zoo, hlg_zoo, 1024, 1251, 300, 20),
}


def _ours(config, batch: int):
    """(JAX schedule, MindSpore-side lr array, steps per epoch, total steps) at `batch`."""
    config.train.batch_size = batch
    spe = optim.steps_per_epoch(IMAGENET_TRAIN, batch)
    total = optim.total_steps(config, spe)
    jax_lr = optim.create_schedule(config, spe, total)
    ms_lr = ms_schedule.learning_rates(
        config, steps_per_epoch=spe, total_steps=total, global_batch=batch
    )
    return jax_lr, ms_lr, spe, total


@pytest.mark.parametrize("name", sorted(SEEDS))
def test_seed_config_is_the_seed_at_its_batch(name):
    module, seed, batch, seed_spe, epochs, warmup = SEEDS[name]
    config = module.get_config()
    assert config.train.batch_size == batch, "the config's default global batch is the seed's"
    jax_lr, ms_lr, spe, total = _ours(config, batch)
    assert (spe, total) == (seed_spe, seed_spe * epochs)
    w = seed_spe * warmup
    steps = [0, 1, 2, w // 2, w - 2, w - 1, w, w + 1, total // 3, total // 2, total - 2, total - 1]
    want = np.array([seed(i) for i in steps], np.float32)  # the zoo hands MindSpore float32
    np.testing.assert_allclose([float(jax_lr(i)) for i in steps], want, rtol=2e-6, atol=1e-12)
    np.testing.assert_allclose(ms_lr[steps], want, rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("name", sorted(SEEDS))
@pytest.mark.parametrize("factor", [1 / 8, 2])
def test_seed_config_keeps_the_lr_per_image_at_other_batches(name, factor):
    """Same point of training (epochs), lr / batch equal to the seed's (the seed's lr read between
    its steps, hence the tolerance: its one-step count offset at another step size)."""
    module, seed, batch, seed_spe, epochs, warmup = SEEDS[name]
    config = module.get_config()
    other = int(batch * factor)
    jax_lr, ms_lr, spe, total = _ours(config, other)
    for frac in (warmup / epochs / 2, 0.25, 0.5, 0.75):
        k = int(frac * total)
        seed_step = k / spe * seed_spe
        lo, hi = seed(math.floor(seed_step)), seed(math.ceil(seed_step))
        want = (lo + (hi - lo) * (seed_step - math.floor(seed_step))) * other / batch
        np.testing.assert_allclose(float(jax_lr(k)), want, rtol=2e-3)
        np.testing.assert_allclose(ms_lr[k], want, rtol=2e-3)

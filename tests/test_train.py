"""train_lib.train on the digits: the periodic actions land on the configured steps, and a
workdir resumes with EMA newly switched on."""

from __future__ import annotations

import json
import logging
import os

import numpy as np
import pytest

import models
from configs import demo
from train_lib import export, train

pytestmark = pytest.mark.slow  # in-process trainings
PER_EPOCH = 89  # digits: 1438 training images in batches of 16


def _config(**train_overrides):
    config = demo.get_config()
    config.train.update(batch_size=16, tensorboard=False, **train_overrides)
    return config


def _rows(workdir, split: str) -> list[int]:
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        return [r["step"] for r in map(json.loads, f) if r["split"] == split]


def _checkpoints(workdir) -> list[int]:
    return sorted(int(n) for n in os.listdir(os.path.join(workdir, "checkpoints")) if n.isdigit())


def test_periods_in_steps_and_epochs_land_on_their_steps_and_the_last(tmp_path):
    workdir = str(tmp_path / "w")
    config = _config(
        steps=5,
        log_every_steps=0,
        log_every_epochs=2.5 / PER_EPOCH,  # 2 steps
        checkpoint_every_steps=0,
        checkpoint_every_epochs=3.5 / PER_EPOCH,  # 3 steps
        eval_every_epochs=0.0,
        eval_every_steps=4,
    )
    train.run(config, workdir)
    assert _rows(workdir, "train") == [2, 4, 5]
    assert _checkpoints(workdir) == [3, 5]
    assert _rows(workdir, "eval") == [4, 5]


def test_resume_with_ema_switched_on_starts_the_average_from_the_checkpoint(tmp_path, caplog):
    """A checkpoint saved without EMA weights resumes with train.ema_decay newly set (and
    --allow_config_change): one warning, and the average starts at the restored weights (at a
    decay of 1 - 1e-7 it stays there; from the random initialisation it would be far)."""
    workdir = str(tmp_path / "w")
    config = _config(steps=4, stop_after_steps=2, eval_every_epochs=100)
    train.run(config, workdir)
    at_2 = models.weights.read(export.run(config, workdir))[0]

    config = _config(steps=4, eval_every_epochs=100, ema_decay=1 - 1e-7)
    with caplog.at_level(logging.WARNING):
        train.run(config, workdir, allow_config_change=True)
    notes = [r.getMessage() for r in caplog.records if "no EMA weights" in r.getMessage()]
    assert notes == [
        "the checkpoint of step 2 holds no EMA weights (train.ema_decay was 0); "
        "the average starts from its weights"
    ]
    assert _rows(workdir, "eval_ema") == [4]
    raw = models.weights.read(export.run(config, workdir))[0]
    config.export_ema = True
    ema = models.weights.read(export.run(config, workdir))[0]
    params = [k for k in at_2 if k.endswith("kernel")]
    assert max(float(np.abs(raw[k] - at_2[k]).max()) for k in params) > 1e-3  # it trained on
    for k in params:
        np.testing.assert_allclose(ema[k], at_2[k], atol=1e-5, err_msg=k)

"""main.py's training path end to end on real data pipelines: digits learns, the TFDS imagenet2012
builder path trains and evaluates, and a folder with ImageNet's landmine files trains on."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import models
from configs import demo
from tests.fake_data import add_bad_files, imagenet_wnids, make_fake_ilsvrc, make_folder
from train_lib import evaluate, train

pytestmark = pytest.mark.slow  # main.py trainings in subprocesses


def _short(config, **train):
    config.train.tensorboard = False
    config.train.update(train)
    return config


@pytest.mark.xdist_group("digits_run")
def test_demo_learns_digits_and_evaluates_its_export(tmp_path, digits_run):
    """A couple of epochs of the demo recipe (the conftest fixture digits_run): far above the 10%
    of chance, every image counted; --mode=eval of the exported weights gives the same accuracy
    as the end of training."""
    result = digits_run["result"]
    assert result["examples"] == 359
    assert result["top1"] >= 0.8, result  # measured 0.94 after these 60 steps
    rows = [json.loads(line) for line in open(digits_run["workdir"] / "metrics.jsonl")]
    train_rows = [r for r in rows if r["split"] == "train"]
    assert train_rows[-1]["loss"] < train_rows[0]["loss"]

    path = digits_run["export"]
    assert models.weights.read(path)[1]["model"] == "hardnet39ds"
    config = _short(demo.get_config())
    config.init_from = path
    again = evaluate.run(config, str(tmp_path / "eval"))
    assert again["examples"] == 359
    assert abs(again["top1"] - result["top1"]) <= 1 / 359


@pytest.mark.xdist_group("end_to_end")
def test_tfds_imagenet2012_from_manual_tars_trains_and_evaluates(tmp_path):
    manual = tmp_path / "manual"
    make_fake_ilsvrc(manual, imagenet_wnids(4), per_class=6, num_val=10)
    config = _short(demo.get_config(), steps=2, batch_size=8, eval_batch_size=4)
    config.model.num_classes = 1000
    config.data.update(
        source="tfds:imagenet2012",
        data_dir=str(tmp_path / "tfds"),
        manual_dir=str(manual),
        image_size=32,
        crop_min=0.08,
        random_flip=True,
    )
    result = train.run(config, str(tmp_path / "run"))
    assert result["examples"] == 10 and np.isfinite(result["loss"])
    assert sorted(n for n in os.listdir(tmp_path / "run" / "checkpoints") if n.isdigit()) == ["2"]


@pytest.mark.xdist_group("end_to_end")
def test_folder_with_bad_files_trains_on(tmp_path):
    root = tmp_path / "images"
    make_folder(root, {"train": {"a": 6, "b": 6}, "val": {"a": 3, "b": 3}})
    add_bad_files(str(root / "train" / "a"), np.random.default_rng(5))
    add_bad_files(str(root / "val" / "b"), np.random.default_rng(6))
    config = _short(demo.get_config(), steps=3, batch_size=8, eval_batch_size=4)
    config.model.num_classes = 2
    config.data.update(source=f"folder:{root}", image_size=32)
    result = train.run(config, str(tmp_path / "run"))
    # The 6 good val images plus the PNG-named-JPEG and the CMYK JPEG decode; the truncated and
    # garbage files are skipped.
    assert result["examples"] == 8 and np.isfinite(result["loss"])

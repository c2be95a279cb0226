"""Fine-tuning on the JAX side: the demo's 10-class export starts a 5-class run; the backbone
comes from the file, the classifier is new, a frozen backbone stays put while the head learns,
and the backbone's lr scale reaches the updates."""

from __future__ import annotations

import logging

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import models
from configs import demo
from models import registry
from models.classifier import classifier_keys
from tests.fake_data import make_folder
from train_lib import build, export, finetune, optim, train
from train_lib.errors import UserError
from train_lib.state import SplitModel

HEAD = ["base.14.3.kernel", "base.14.3.bias"]  # hardnet39ds's classifier
CONV = "base.0.conv.kernel"  # the stem's first conv


@pytest.fixture(scope="module")
def exported(digits_run) -> str:
    """The demo (10 digit classes) trained and exported: the conftest fixture digits_run, whose
    xdist group the tests using it join (one worker trains it once)."""
    return digits_run["export"]


def _five_classes(root, init_from: str, **train):
    make_folder(root, {"train": {c: 4 for c in "abcde"}, "val": {c: 1 for c in "abcde"}})
    config = demo.get_config()
    config.init_from = init_from
    config.model.num_classes = 5
    config.data.update(source=f"folder:{root}", image_size=32)
    config.train.update(batch_size=8, eval_every_epochs=100, tensorboard=False, **train)
    return config  # 20 images: 2 steps per epoch


def test_classifier_rule_finds_each_familys_head():
    for name, head in [
        ("hardnet39ds", "base.14.3"),
        ("hrnet_w18_small", "classifier"),
        ("hlg_tiny", "head"),
    ]:
        shapes = models.weights.shapes(registry.abstract(name, num_classes=7))
        assert classifier_keys(shapes, 7) == [f"{head}.bias", f"{head}.kernel"], name


@pytest.mark.slow  # trainings: the demo for `exported`, then a fine-tune
@pytest.mark.xdist_group("digits_run")
def test_frozen_backbone_keeps_the_files_weights_and_the_head_learns(exported, tmp_path, caplog):
    config = _five_classes(tmp_path / "five", exported, steps=2, freeze_backbone_epochs=1.0)
    fresh = models.weights.flatten(build.model(config, fresh_head=True))
    source = models.weights.read(exported)[0]
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        train.run(config, str(tmp_path / "run"))
    lines = [r.getMessage() for r in caplog.records if "but the classifier" in r.getMessage()]
    assert len(lines) == 1 and all(k in lines[0] for k in HEAD), lines
    tuned = models.weights.read(export.run(config, str(tmp_path / "run")))[0]

    # Before training: backbone from the file, head fresh (not the file's, other shape).
    np.testing.assert_array_equal(fresh[CONV], source[CONV])
    assert fresh[HEAD[0]].shape == (1024, 5) and source[HEAD[0]].shape == (1024, 10)
    # Two steps = one frozen epoch: every backbone param exactly the file's, the head moved.
    params = set(SplitModel(build.model(config, fresh_head=True)).initial_params)
    for key in params - set(HEAD):
        np.testing.assert_array_equal(tuned[key], source[key], err_msg=key)
    assert not np.allclose(tuned[HEAD[0]], fresh[HEAD[0]])
    # BatchNorm stays in train mode while frozen: its running statistics follow the new data.
    assert not np.allclose(tuned["base.0.norm.mean"], source["base.0.norm.mean"])


@pytest.mark.slow  # the demo for `exported`
@pytest.mark.xdist_group("digits_run")
def test_matching_head_loads_as_usual_and_eval_stays_strict(exported, tmp_path):
    source = models.weights.read(exported)[0]
    config = _five_classes(tmp_path / "five", exported)
    config.model.num_classes = 10
    same = models.weights.flatten(build.model(config, fresh_head=True))
    for key in HEAD + [CONV]:
        np.testing.assert_array_equal(same[key], source[key])
    config.model.num_classes = 5  # evaluating a file of another class count is a mistake
    with pytest.raises(UserError, match="base.14.3"):
        build.model(config)


def test_backbone_lr_scale_and_freeze_reach_the_updates():
    config = demo.get_config()
    config.optim.update(name="sgd", momentum=0.0, weight_decay=1e-2)
    config.optim.backbone_lr_scale = 0.1
    config.train.freeze_backbone_epochs = 1.0
    config.model.num_classes = 3
    params = {
        "conv.kernel": jnp.ones((3, 3, 2, 4)),
        "fc.kernel": jnp.ones((4, 3)),
        "fc.bias": jnp.ones((3,)),
    }
    tx = finetune.create_optimizer(config, optax.constant_schedule(0.5), params, 2)
    state = tx.init(params)
    grads = {k: jnp.full_like(v, 2.0) for k, v in params.items()}
    head_update = -0.5 * (2.0 + 1e-2)
    for step in range(3):  # two frozen steps, then the backbone at lr * 0.1
        updates, state = tx.update(grads, state, params)
        np.testing.assert_allclose(updates["fc.kernel"], head_update, rtol=1e-6)
        expected = 0.0 if step < 2 else 0.1 * head_update
        np.testing.assert_allclose(updates["conv.kernel"], expected, rtol=1e-6)
    config.optim.backbone_lr_scale, config.train.freeze_backbone_epochs = 1.0, 0.0
    assert type(finetune.create_optimizer(config, optax.constant_schedule(0.5), params, 2)) is type(
        optim.create_optimizer(config, optax.constant_schedule(0.5))
    )


@pytest.mark.parametrize("field", ["optim.backbone_lr_scale", "train.freeze_backbone_epochs"])
def test_negative_options_are_refused(field):
    config = demo.get_config()
    group, name = field.split(".")
    config[group][name] = -1.0
    with pytest.raises(UserError, match=field):
        build.validate(config)

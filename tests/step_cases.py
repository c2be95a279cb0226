"""The one-step parity cases, shared by the JAX, PyTorch and MindSpore sides (ml_collections only).

A case is a model (one representative per family) trained with a recipe's optimizer, loss and
label smoothing for one step on a fixed batch, with augmentation, dropout and drop-path off and
BatchNorm in training mode. The learning rate is the recipe's lr_max (the schedule is tested in
test_seed_schedules.py). Every side writes <dir>/<case id>.<side>.npz with the keys of `keys`.
"""

from __future__ import annotations

import dataclasses
import importlib

from ml_collections import ConfigDict

BATCH = 4
NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    model: str
    recipe: str  # configs/<recipe>.py
    image_size: int
    tier: str  # the cases of a tier run in one MindSpore and one JAX float64 subprocess


# id, model, recipe, input size, tier. hardnet85 is the zoo's recipe (momentum, LS a / (K - 1)),
# hrnet_w48 the zoo's RMSProp; the others are the authors'/paper's. HLG takes 224 only.
CASES = (
    Case("hardnet68ds-sgd_nesterov", "hardnet68ds", "hardnet68ds", 64, "cnn"),
    Case("hardnet68ds-momentum", "hardnet68ds", "hardnet85", 64, "cnn"),
    Case("hrnet_w18_small-sgd_nesterov", "hrnet_w18_small", "hrnet_w18_small", 64, "cnn"),
    Case("hrnet_w18_small-rmsprop", "hrnet_w18_small", "hrnet_w48", 64, "cnn"),
)
# Not yet measured (their 224x224 steps did not fit this round's CPU time): the AdamW recipes,
# hlg_tiny (paper) and hlg_mobile_zoo (zoo), which have no PyTorch reference in this repository.
HLG_CASES = (
    Case("hlg_tiny-adamw", "hlg_tiny", "hlg_tiny", 224, "hlg"),
    Case("hlg_mobile_zoo-adamw", "hlg_mobile_zoo", "hlg_mobile_zoo", 224, "hlg"),
)
BY_ID = {c.id: c for c in CASES + HLG_CASES}


def config(case: Case) -> ConfigDict:
    """The recipe's config for this case: its optimizer and loss; batch, classes and the input
    size of the case; no dropout, drop-path, augmentation or gradient clipping."""
    c = importlib.import_module(f"configs.{case.recipe}").get_config()
    c.model.name = case.model
    c.model.num_classes = NUM_CLASSES
    c.model.drop_rate = 0.0
    if c.model.drop_path_rate is not None:
        c.model.drop_path_rate = 0.0
    c.train.batch_size = BATCH
    c.train.grad_clip_norm = None  # not on the MindSpore side yet; the step itself is compared
    c.data.image_size = case.image_size
    return c


def lr(case: Case) -> float:
    """The recipe's peak lr as written (not scaled down to the case's batch of 4, so that the
    update stands out of the parameters' own rounding)."""
    return float(config(case).schedule.lr_max)


def model_kwargs(c: ConfigDict) -> dict:
    kwargs = {"drop_rate": c.model.drop_rate}
    if c.model.drop_path_rate is not None:
        kwargs["drop_path_rate"] = c.model.drop_path_rate
    return kwargs

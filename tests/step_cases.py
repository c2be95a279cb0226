"""The one-step parity cases, shared by the JAX, PyTorch and MindSpore sides (ml_collections and
numpy only).

A case is a model (one representative per family) trained with a recipe's optimizer, loss and
label smoothing for one step on a fixed batch, with augmentation, dropout and drop-path off and
BatchNorm in training mode. The learning rate is the recipe's lr_max (the schedule is tested in
test_seed_schedules.py). Every side writes <dir>/<case id>.<side>.npz with the keys of `keys`.
"""

from __future__ import annotations

import dataclasses
import importlib

import numpy as np
from ml_collections import ConfigDict

NUM_CLASSES = 10


@dataclasses.dataclass(frozen=True)
class Case:
    id: str
    model: str
    recipe: str  # configs/<recipe>.py
    image_size: int
    batch: int
    reference: str | None  # the PyTorch reference model's source; None: optimizer-only check


# id, model, recipe, input size, batch, PyTorch reference. hardnet85 is the zoo's recipe
# (momentum, LS a / (K - 1)), hrnet_w48 the zoo's RMSProp, hlg_mobile_zoo the zoo's AdamW; the
# others are the authors'/paper's. Each family's model is the cheapest one that runs its code
# (tests/variants.py: HarDNet-68ds is HarDNet-39ds's depthwise blocks with other widths and
# depths, HLG-Tiny is HLG-mobile's blocks with other widths and depths): their compiled train
# steps, float64 steps and MindSpore PyNative steps are the whole cost of the comparison
# (measured, CPU-s without a compilation cache: hlg_tiny 244, hlg_mobile 150; hardnet68ds 157,
# hardnet39ds 92). 64 px is the smallest input whose last stage
# (stride 32) has more than one position per channel for BatchNorm; HLG takes 224 only. Batch 2:
# every model's last BatchNorm then still averages 8 values per channel.
CASES = (
    Case("hardnet39ds-sgd_nesterov", "hardnet39ds", "hardnet39ds", 64, 2, "pytorchcv"),
    Case("hardnet39ds-momentum", "hardnet39ds", "hardnet85", 64, 2, "pytorchcv"),
    Case("hrnet_w18_small-sgd_nesterov", "hrnet_w18_small", "hrnet_w18_small", 64, 2, "timm"),
    Case("hrnet_w18_small-rmsprop", "hrnet_w18_small", "hrnet_w48", 64, 2, "timm"),
    Case("hlg_mobile-adamw", "hlg_mobile", "hlg_tiny", 224, 2, None),
    Case("hlg_mobile_zoo-adamw", "hlg_mobile_zoo", "hlg_mobile_zoo", 224, 2, None),
)
BY_ID = {c.id: c for c in CASES}
# The cases of a model share its weights and batch (written once as <dir>/<model>.*).
MODELS = {c.model: c for c in CASES}


def config(case: Case) -> ConfigDict:
    """The recipe's config for this case: its optimizer and loss; batch, classes and the input
    size of the case; no dropout, drop-path, augmentation, gradient clipping or weight average."""
    c = importlib.import_module(f"configs.{case.recipe}").get_config()
    c.model.name = case.model
    c.model.num_classes = NUM_CLASSES
    if c.model.drop_rate is not None or not case.model.startswith("hlg"):
        c.model.drop_rate = 0.0  # HLG's builders have no classifier dropout
    if c.model.drop_path_rate is not None:
        c.model.drop_path_rate = 0.0
    c.train.batch_size = case.batch
    # The plain step: clipping and the weight average have their own cross-framework tests
    # (the MindSpore step cell's against the JAX side's step).
    c.train.grad_clip_norm = None
    c.train.ema_decay = 0.0
    c.data.image_size = case.image_size
    return c


def lr(case: Case) -> float:
    """The recipe's peak lr as written (not scaled down to the case's batch, so that the
    update stands out of the parameters' own rounding)."""
    return float(config(case).schedule.lr_max)


def model_kwargs(c: ConfigDict) -> dict:
    kwargs = {}
    if c.model.drop_rate is not None:
        kwargs["drop_rate"] = c.model.drop_rate
    if c.model.drop_path_rate is not None:
        kwargs["drop_path_rate"] = c.model.drop_path_rate
    return kwargs


def targets(case: Case, labels: np.ndarray) -> np.ndarray:
    """The recipe's smoothed float64 targets: a / K off and on the label ('uniform', timm and
    PyTorch), or a / (K - 1) on every other class ('others', the MindSpore zoo)."""
    c = config(case).train
    k, a = NUM_CLASSES, c.label_smoothing
    one_hot = np.eye(k)[labels]
    if c.label_smoothing_mode == "others":
        return one_hot * (1 - a) + (1 - one_hot) * (a / (k - 1))
    return one_hot * (1 - a) + a / k

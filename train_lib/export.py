"""--mode=export: the latest checkpoint as canonical safetensors weights."""

from __future__ import annotations

import os

import jax
from ml_collections import ConfigDict

import models
from models import canonical
from train_lib import build, run_config


def run(config: ConfigDict, workdir: str) -> str:
    """Writes <workdir>/export/<model>.safetensors (its EMA with config.export_ema); the path."""
    build.validate(config)
    run_config.check_workdir(workdir)
    # Restored into the model's own (abstract) names and shapes: already its canonical weights,
    # so no model is built here (a build costs a trace and an init compile).
    flat = build.latest_weights(config, workdir)
    num_classes = config.model.num_classes or models.info(config.model.name).default_num_classes
    path = os.path.join(workdir, "export", f"{config.model.name}.safetensors")
    if jax.process_index() == 0:
        canonical.write(flat, path, model=config.model.name, num_classes=num_classes)
    return path

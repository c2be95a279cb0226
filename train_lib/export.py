"""--mode=export: the latest checkpoint as canonical safetensors weights."""

from __future__ import annotations

import os

import jax
from ml_collections import ConfigDict

import models
from train_lib import build, run_config


def run(config: ConfigDict, workdir: str) -> str:
    """Writes <workdir>/export/<model>.safetensors (its EMA with config.export_ema); the path."""
    build.validate(config)
    run_config.check_workdir(workdir)
    flat = build.latest_weights(config, workdir)
    model = models.create(config.model.name, num_classes=config.model.num_classes, weights=flat)
    path = os.path.join(workdir, "export", f"{config.model.name}.safetensors")
    if jax.process_index() == 0:
        models.weights.save(model, path)
    return path

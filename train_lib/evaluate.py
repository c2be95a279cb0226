"""--mode=eval, and the one pass over the eval split that training's periodic eval runs too."""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from ml_collections import ConfigDict

import input_pipeline
from train_lib import build, plots, run_config, steps
from train_lib import mesh as mesh_lib
from train_lib.errors import UserError
from train_lib.state import SplitModel


def one_pass(
    config: ConfigDict, eval_step, params, batch_stats, sharding, num_examples: int
) -> dict[str, Any]:
    """One pass over the eval split; every image counts exactly once (padding is masked).
    The result holds the confusion matrix as an array under "confusion" (see `report`)."""
    batch_size = config.train.eval_batch_size or config.train.batch_size
    batches = input_pipeline.eval_batches(
        config.data,
        global_batch_size=batch_size,
        process_index=jax.process_index(),
        process_count=jax.process_count(),
        **build.eval_crop(config),
    )
    total = None
    for batch in mesh_lib.prefetch_to_device(batches, sharding, config.data.prefetch):
        total = steps.accumulate(total, eval_step(params, batch_stats, batch))
    if total is None:
        raise UserError(f"the eval split of {config.data.source} is empty")
    total = mesh_lib.fetch_replicated(total)
    confusion = np.asarray(total.pop("confusion"))
    total = {k: float(v) for k, v in total.items()}
    count = int(round(total.pop("count")))
    if count != num_examples:
        raise RuntimeError(f"evaluated {count} images, the split has {num_examples}")
    return {
        "loss": total["loss"] / count,
        "top1": total["top1"] / count,
        "top5": total["top5"] / count,
        "examples": count,
        "confusion": confusion,
    }


def report(workdir: str, result: dict[str, Any], class_names, **extra: Any) -> None:
    """Pops the confusion matrix off `result` into eval_result.json (per-class accuracy) and
    plots/confusion.png (up to plots.CONFUSION_MAX_CLASSES classes), on process 0."""
    confusion = result.pop("confusion")
    if jax.process_index() == 0:
        plots.write_eval_report(workdir, result, confusion, class_names, **extra)


def run(config: ConfigDict, workdir: str) -> dict[str, float]:
    """Evaluates config.init_from if set, else the latest checkpoint in workdir."""
    build.validate(config)
    run_config.check_workdir(workdir)
    data_info = build.dataset_info(config)
    split = SplitModel(build.trained_model(config, workdir))
    mesh = mesh_lib.make_mesh()
    params, stats = jax.device_put(
        (split.initial_params, split.initial_stats), mesh_lib.replicated(mesh)
    )
    result = one_pass(
        config,
        build.eval_step(config, split),
        params,
        stats,
        mesh_lib.data_sharding(mesh),
        data_info.num_eval_examples,
    )
    report(workdir, result, data_info.class_names, weights=config.init_from or "latest checkpoint")
    return result

"""The MindSpore half of tests/test_recipes_train.py, run by HHL_ASCEND_PYTHON.

    python tests/ascend_side/check_recipes.py mixup OUT.npz

Mixes the test batch of tests/test_recipes_train.py through ascend_port.mixup.BatchMixup inside
a real mindspore.dataset pipeline (per_batch_map of Dataset.batch) and saves the mixed images
(as NHWC, for comparison with the JAX side) and soft targets per case.
"""

from __future__ import annotations

import json
import os
import sys

import mindspore.dataset as msds
import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))

from ascend_port.mixup import BatchMixup  # noqa: E402
from train_lib.recipes import mixup as rule  # noqa: E402


def mixup_cases(cases: dict, out: str) -> None:
    saved = {}
    for name, case in cases.items():
        images = np.asarray(case["images"], np.float32).transpose(0, 3, 1, 2)  # NHWC -> NCHW
        labels = np.asarray(case["labels"], np.int32)
        spec = rule.MixupSpec(**case["spec"])
        ds = msds.NumpySlicesDataset({"image": images, "label": labels}, shuffle=False)
        mixer = BatchMixup(spec, case["num_classes"], case["smoothing"], seed=case["seed"])
        ds = ds.batch(len(images), per_batch_map=mixer, input_columns=["image", "label"])
        row = next(ds.create_dict_iterator(output_numpy=True, num_epochs=1))
        saved[f"{name}/images"] = row["image"].transpose(0, 2, 3, 1)
        saved[f"{name}/targets"] = row["label"]
    np.savez(out, **saved)


def decay_flags(cases: dict, out: str) -> None:
    """{model: {canonical name: decayed}} from ascend_port.optim.decays over each cell."""
    from ascend_port import bridge, optim, registry

    result = {}
    for name in cases["models"]:
        cell = registry.create(name, num_classes=10)
        names = bridge.ms_to_canonical_names([p.name for p in cell.get_parameters()])
        params = cell.trainable_params()
        flags = optim.decays(params, False, registry.info(name).family)
        result[name] = {names[p.name]: f for p, f in zip(params, flags, strict=True)}
    with open(out, "w") as f:
        json.dump(result, f)


def loss_scale(cases: dict, out: str) -> None:
    """Which manager ascend_port.train builds per ascend.loss_scale_mode, and what it does on an
    overflow (MindSpore's own update rule, with our settings)."""
    from mindspore import Tensor

    from ascend_port import train
    from configs import base

    result = {}
    for mode in ("dynamic", "fixed"):
        config = base.get_config()
        config.ascend.loss_scale_mode = mode
        manager = train._loss_scale_manager(config, 1024.0)
        before = manager.get_loss_scale()
        manager.update_loss_scale(Tensor(True))  # an overflowing step
        result[mode] = {
            "type": type(manager).__name__,
            "before": before,
            "after": manager.get_loss_scale(),
            "drops_update": manager.get_drop_overflow_update(),
        }
    with open(out, "w") as f:
        json.dump(result, f)


if __name__ == "__main__":
    what, cases_path, out = sys.argv[1:4]
    with open(cases_path) as f:
        cases = json.load(f)
    {"mixup": mixup_cases, "decay": decay_flags, "loss_scale": loss_scale}[what](cases, out)

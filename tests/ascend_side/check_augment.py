"""The MindSpore half of tests/test_augment.py, run by HHL_ASCEND_PYTHON.

    python -m tests.ascend_side.check_augment DIR

DIR/image.npz holds 'image' (uint8 HWC); DIR/folder is an ImageFolder root. Writes
DIR/ops.npz (every timm op at a few magnitudes and both signs, as ascend_port.augment computes
it, for the JAX side to compare with its TF ops) and DIR/results.json (the property checks and
one augmented batch of ascend_port.data.train_dataset per config in DIR/configs.json).
"""

from __future__ import annotations

import json
import os
import sys

import mindspore.dataset as msds
import numpy as np
from PIL import Image

from ascend_port import augment, data
from configs import base
from input_pipeline import augment_rules as rules

LEVELS = (0.0, 3.0, 7.3, 10.0)


def _ops(image: np.ndarray) -> dict[str, np.ndarray]:
    names = set(rules.RAND_TRANSFORMS + rules.RAND_INCREASING_TRANSFORMS)
    names |= {name for sub in rules.ORIGINAL_POLICY for name, _, _ in sub}
    out = {}
    for name in sorted(names):
        for level in LEVELS:
            for sign in (1.0, -1.0):
                img = augment.apply_op(name, Image.fromarray(image), level, sign)
                out[f"{name}/{level}/{sign}"] = np.asarray(img)
    return out


def _properties(image: np.ndarray) -> dict[str, bool]:
    checks = {}
    pil = Image.fromarray(image)
    checks["geometric_m0_identity"] = all(
        np.array_equal(np.asarray(augment.apply_op(n, pil, 0.0, s)), image)
        for n in rules.GEOMETRIC
        for s in (1.0, -1.0)
    )
    for config in ("imagenet", "rand-m9-mstd0.5-inc1"):
        spec = rules.parse(config)
        outs = [augment.TimmAugment(spec, np.random.default_rng(i))(image) for i in range(12)]
        again = augment.TimmAugment(spec, np.random.default_rng(0))(image)
        checks[f"{config}_same_seed_same"] = np.array_equal(again, outs[0])
        checks[f"{config}_seeds_differ"] = len({o.tobytes() for o in outs}) > 4
        checks[f"{config}_uint8_shape"] = all(
            o.dtype == np.uint8 and o.shape == image.shape for o in outs
        )
    chw = (image.transpose(2, 0, 1).astype(np.float32) - 120.0) / 60.0
    checks["erase_p0_identity"] = all(
        np.array_equal(augment.RandomErasing(0.0, np.random.default_rng(i))(chw), chw)
        for i in range(10)
    )
    erased = augment.RandomErasing(1.0, np.random.default_rng(0))(chw)
    checks["erase_p1_one_rectangle"] = bool((erased != chw).any()) and erased.dtype == chw.dtype
    return checks


def _batch(root: str, overrides: dict) -> dict:
    """One batch of the train pipeline with the config's augmentations."""
    config = base.get_config()
    config.model.name = "hardnet39ds"
    config.data.image_size = 32
    config.data.num_workers = 1
    for key, value in overrides.items():
        setattr(config.data, key, value)
    ds = data.train_dataset(config, root, batch_size=4)
    batch = next(ds.create_dict_iterator(num_epochs=1, output_numpy=True))
    image = batch["image"]
    return {
        "shape": list(image.shape),
        "dtype": str(image.dtype),
        "finite": bool(np.isfinite(image).all()),
        "labels": batch["label"].tolist(),
    }


def main(directory: str) -> None:
    msds.config.set_seed(0)
    image = np.load(os.path.join(directory, "image.npz"))["image"]
    np.savez(os.path.join(directory, "ops.npz"), **_ops(image))
    with open(os.path.join(directory, "configs.json")) as f:
        configs = json.load(f)
    results = {
        "properties": _properties(image),
        "batches": [_batch(os.path.join(directory, "folder"), c) for c in configs],
    }
    with open(os.path.join(directory, "results.json"), "w") as f:
        json.dump(results, f)


if __name__ == "__main__":
    main(sys.argv[1])

"""MindSpore side of tests/test_shared_rules.py: the rules both environments must agree on.

    python -m tests.ascend_side.shared_rules <dir>     # reads <dir>/manifest.json

For each ImageFolder root: ascend_port.data's class -> label map and the labels its MindSpore dataset
yields. For each shipped config: the learning-rate table the MindSpore
trainer hands to its optimizer. Writes <dir>/results.json; imports no jax.
"""

from __future__ import annotations

import importlib
import json
import os
import sys

import mindspore.dataset as msds
import numpy as np

from ascend_port import data
from tests.ascend_side import results as check_results
from train_lib import lr_schedule


def folder_labels(config, root: str, split: str) -> dict:
    ds = msds.ImageFolderDataset(
        data.split_dir(root, split), shuffle=False, class_indexing=data.class_indexing(config, root)
    )
    labels = sorted(int(r["label"]) for r in ds.create_dict_iterator(output_numpy=True))
    return {"map": data.class_indexing(config, root), "labels": labels}


def main(d: str) -> None:
    manifest = json.load(open(os.path.join(d, "manifest.json")))
    results: dict = {"folders": {}, "lrs": {}}
    for root, (train_split, eval_split) in manifest["folders"].items():
        config = importlib.import_module("configs.base").get_config()
        config.data.train_split, config.data.eval_split = train_split, eval_split
        results["folders"][root] = {
            s: folder_labels(config, root, s) for s in (train_split, eval_split)
        }
    for name in manifest["configs"]:
        config = importlib.import_module(f"configs.{name}").get_config()
        per_epoch = manifest["steps_per_epoch"]
        total = config.train.steps or int(np.ceil(config.train.epochs * per_epoch))
        lrs = lr_schedule.learning_rates(
            config,
            steps_per_epoch=per_epoch,
            total_steps=total,
            global_batch=config.train.batch_size,
        )
        np.save(os.path.join(d, f"lrs_{name}.npy"), lrs)
        results["lrs"][name] = total
    check_results.write(d, results)


if __name__ == "__main__":
    main(sys.argv[1])

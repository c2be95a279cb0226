"""Rules both environments share give the same answers on both: the ImageFolder class -> label
map and the learning-rate table of every shipped config.

Each rule has one framework-free implementation (input_pipeline/folder.py, train_lib/lr_schedule.py);
these tests run the MindSpore side through $HHL_ASCEND_PYTHON, as the trainers call it there, and
compare with what the JAX side computes.
"""

from __future__ import annotations

import glob
import json
import logging
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from input_pipeline import folder
from tests.test_ascend_port import REPO, run_ascend
from train_lib import optim

CONFIGS = sorted(
    os.path.basename(p)[:-3]
    for p in glob.glob(os.path.join(REPO, "configs", "*.py"))
    if "def get_config" in open(p).read() and not p.endswith("base.py")
)
STEPS_PER_EPOCH = 7  # odd, so fractional warmup and boundary epochs round

pytestmark = pytest.mark.xdist_group("ascend_port")


def _image(path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (8, 8), (len(path.name) * 20, 0, 0)).save(path)


def _tricky_tree(root) -> tuple[str, str]:
    """Hidden folders, a class only in train/, unicode and space names."""
    for split, classes in {
        "train": ["cat", "dog", "zèbre à pois", "only train", "Ω", ".ipynb_checkpoints"],
        "val": ["cat", "dog", "zèbre à pois", "Ω", ".hidden"],
    }.items():
        for i, name in enumerate(classes):
            for j in range(1 + i % 3):
                _image(root / split / name / f"{j} img.png")
    return "train", "validation"


def _jax_side(root: str, splits: tuple[str, str]) -> dict:
    names = folder.class_names(root, splits)
    return {
        s: {
            "map": {n: i for i, n in enumerate(names)},
            "labels": sorted(folder.list_split(root, s, names).labels.tolist()),
        }
        for s in splits
    }


@pytest.fixture(scope="module")
def ascend_side(tmp_path_factory):
    d = tmp_path_factory.mktemp("shared_rules")
    tricky = d / "tricky"
    folders = {str(tricky): _tricky_tree(tricky)}
    (d / "manifest.json").write_text(
        json.dumps({"folders": folders, "configs": CONFIGS, "steps_per_epoch": STEPS_PER_EPOCH})
    )
    run_ascend(["-m", "tests.ascend_side.shared_rules", str(d)], timeout=300)
    return d, folders, json.loads((d / "results.json").read_text())


def test_folder_class_maps_are_identical_on_both_sides(ascend_side):
    _, folders, results = ascend_side
    for root, splits in folders.items():
        ours = _jax_side(root, tuple(splits))
        assert results["folders"][root] == ours
        # The map is the union of both splits, hidden folders skipped.
        assert list(ours["train"]["map"]) == ["cat", "dog", "only train", "zèbre à pois", "Ω"]
    assert results["forbidden_modules"] == []


def test_lr_tables_are_equal_for_every_shipped_config(ascend_side):
    d, _, results = ascend_side
    assert sorted(results["lrs"]) == CONFIGS and len(CONFIGS) > 10
    config_lib = __import__("importlib").import_module
    for name in CONFIGS:
        config = config_lib(f"configs.{name}").get_config()
        total = results["lrs"][name]
        schedule = optim.create_schedule(config, STEPS_PER_EPOCH, total)
        ours = np.asarray(jax.jit(jax.vmap(schedule))(jnp.arange(total)))
        theirs = np.load(d / f"lrs_{name}.npy")
        assert theirs.shape == (total,)
        assert ours.max() > 0
        # Same float32 formula; numpy's and XLA's cos differ by an ulp or so of their argument.
        atol = 4 * np.finfo(np.float32).eps * ours.max()
        np.testing.assert_allclose(theirs, ours, rtol=1e-6, atol=atol, err_msg=name)


def test_empty_class_folder_is_warned_once(tmp_path, caplog):
    _image(tmp_path / "train" / "a" / "1.png")
    (tmp_path / "train" / "empty").mkdir()
    (tmp_path / "train" / "empty" / "notes.txt").write_text("no images here")
    names = folder.class_names(str(tmp_path), ("train",))
    with caplog.at_level(logging.WARNING):
        for _ in range(3):
            listed = folder.list_split(str(tmp_path), "train", names)
    warnings = [r.getMessage() for r in caplog.records if "holds no images" in r.getMessage()]
    assert len(warnings) == 1 and "empty" in warnings[0], warnings
    assert listed.labels.tolist() == [0] and names == ("a", "empty")

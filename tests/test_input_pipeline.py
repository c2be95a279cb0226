"""input_pipeline: sources, preprocessing, determinism on resume, eval padding, clear errors.

Every dataset here is made by the test in tmp_path (tiny images, 16-40 px). TensorFlow is imported
once per session by the `tf` fixture; the synthetic-source test checks in a subprocess that the
synthetic path never imports it.
"""

from __future__ import annotations

import hashlib
import logging
import os
import subprocess
import sys

import numpy as np
import pytest

import input_pipeline
from configs.base import get_config
from input_pipeline import DatasetNotFoundError, digits
from tests.fake_data import (
    add_bad_files,
    imagenet_wnids,
    jpeg_bytes,
    make_fake_ilsvrc,
    make_folder,
)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SIZE = 16  # pipeline output size in these tests


@pytest.fixture(scope="session")
def tf():
    """TensorFlow, imported (and hidden from GPUs) once for the whole session."""
    from input_pipeline.tf_runtime import tf

    return tf


def data_config(source: str, **overrides):
    data = get_config().data
    data.source = source
    data.image_size = SIZE
    data.shuffle_buffer = 64
    data.num_workers = 2
    for key, value in overrides.items():
        setattr(data, key, value)
    return data


def take(iterator, n: int) -> list[dict[str, np.ndarray]]:
    return [next(iterator) for _ in range(n)]


def fingerprint(image: np.ndarray) -> str:
    return hashlib.sha1(image.tobytes()).hexdigest()


# --- digits -------------------------------------------------------------------------------------


def test_digits_tree_written_once_fixed_split_and_deterministic(tmp_path, monkeypatch, tf):
    monkeypatch.setenv("HHL_DATA_DIR", str(tmp_path / "cache"))
    root = digits.ensure_tree()
    assert root == str(tmp_path / "cache" / "digits-v1")
    manifest = os.stat(os.path.join(root, digits.MANIFEST))
    assert digits.ensure_tree() == root  # second call: nothing rewritten
    again = os.stat(os.path.join(root, digits.MANIFEST))
    assert (again.st_ino, again.st_mtime_ns) == (manifest.st_ino, manifest.st_mtime_ns)
    assert os.listdir(tmp_path / "cache") == ["digits-v1"]  # no temp dir left behind

    for split, expected in (("train", digits.NUM_TRAIN), ("val", digits.NUM_VAL)):
        assert sorted(os.listdir(os.path.join(root, split))) == [str(d) for d in range(10)]
        assert sum(len(files) for _, _, files in os.walk(os.path.join(root, split))) == expected
    assert (digits.NUM_TRAIN, digits.NUM_VAL) == (1438, 359)

    other = tmp_path / "other"
    digits.write_tree(str(other))  # same seed, same bytes
    for parent, _, files in os.walk(root):
        for name in files:
            path = os.path.join(parent, name)
            with open(path, "rb") as a, open(other / os.path.relpath(path, root), "rb") as b:
                assert a.read() == b.read(), path

    info = input_pipeline.dataset_info(data_config("digits"))
    assert info == input_pipeline.DatasetInfo(
        10, digits.NUM_TRAIN, digits.NUM_VAL, tuple(str(d) for d in range(10))
    )
    batch = next(input_pipeline.train_batches(data_config("digits"), global_batch_size=8, seed=0))
    assert batch["image"].shape == (8, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
    assert batch["label"].dtype == np.int32 and set(batch["label"]) <= set(range(10))


# --- tfds:imagenet2012 from fake manual tars -------------------------------------------------------


def test_tfds_imagenet2012_prepared_from_manual_tars(tmp_path, tf):
    wnids = imagenet_wnids(3)
    make_fake_ilsvrc(tmp_path / "manual", wnids, per_class=6, num_val=7)
    data = data_config(
        "tfds:imagenet2012",
        data_dir=str(tmp_path / "tfds"),
        manual_dir=str(tmp_path / "manual"),
    )
    info = input_pipeline.dataset_info(data)
    assert (info.num_classes, info.num_train_examples, info.num_eval_examples) == (1000, 18, 7)
    assert info.class_names[:3] == tuple(wnids)

    batches = take(input_pipeline.train_batches(data, global_batch_size=4, seed=0), 6)  # > 1 epoch
    for batch in batches:
        assert batch["image"].shape == (4, SIZE, SIZE, 3) and batch["image"].dtype == np.uint8
        assert batch["label"].dtype == np.int32 and set(batch["label"]) <= {0, 1, 2}
    # Resumed across an epoch boundary (4 steps per epoch), read by TFDS per epoch and from RAM.
    for cache in (False, True):
        data.cache = cache
        batches = take(input_pipeline.train_batches(data, global_batch_size=4, seed=0), 8)
        resumed = take(
            input_pipeline.train_batches(data, global_batch_size=4, seed=0, start_step=3), 5
        )
        for a, b in zip(batches[3:], resumed, strict=True):
            np.testing.assert_array_equal(a["image"], b["image"])
            np.testing.assert_array_equal(a["label"], b["label"])
        epoch_labels = [np.concatenate([b["label"] for b in batches[i : i + 4]]) for i in (0, 4)]
        assert not np.array_equal(*epoch_labels)  # each epoch is shuffled anew
    data.cache = False

    for process_count in (1, 2):
        masked = 0
        for batches in _eval_shards(data, 4, process_count):
            assert len(batches) == 2  # ceil(7 / 4) on every process
            for batch in batches:
                assert batch["image"].shape == (4 // process_count, SIZE, SIZE, 3)
                assert batch["mask"].dtype == bool
                assert ((batch["label"] >= 0) & (batch["label"] < 1000)).all()
                masked += int(batch["mask"].sum())
        assert masked == 7


# --- folder with bad files -------------------------------------------------------------------------


def test_folder_with_bad_files_trains_and_evaluates(tmp_path, tf, caplog):
    root = tmp_path / "folder"
    make_folder(root, {"train": {"cat": 6, "dog": 6}, "val": {"cat": 3, "dog": 4}})
    rng = np.random.default_rng(5)
    add_bad_files(str(root / "train" / "dog"), rng)
    add_bad_files(str(root / "val" / "cat"), rng)
    (root / "train" / "cat" / "notes.txt").write_text("not an image extension: ignored")
    data = data_config(f"folder:{root}")

    with caplog.at_level(logging.WARNING):
        info = input_pipeline.dataset_info(data)
    # Train counts every image file (bad ones are replaced in-batch); eval counts what decodes:
    # 7 good + PNG-named-JPEG + CMYK, not the truncated and the garbage file.
    assert info == input_pipeline.DatasetInfo(2, 16, 9, ("cat", "dog"))
    scan_log = [r.getMessage() for r in caplog.records if "cannot be decoded" in r.getMessage()]
    assert len(scan_log) == 1 and scan_log[0].startswith("input_pipeline: 2 of 11 files")
    assert "truncated.JPEG" in scan_log[0] and "garbage.JPEG" in scan_log[0]

    caplog.clear()
    with caplog.at_level(logging.WARNING):
        batches = take(
            input_pipeline.train_batches(data, global_batch_size=4, seed=0), 8
        )  # 2 epochs
    for batch in batches:
        assert batch["image"].shape == (4, SIZE, SIZE, 3) and set(batch["label"]) <= {0, 1}
    skipped = [
        r.getMessage() for r in caplog.records if "undecodable training image" in r.getMessage()
    ]
    assert any("garbage.JPEG" in m for m in skipped)  # logged once, though seen every epoch
    assert len(skipped) == len(set(skipped)) and all(
        "garbage.JPEG" in m or "truncated.JPEG" in m for m in skipped
    )

    batches = list(input_pipeline.eval_batches(data, global_batch_size=4))
    assert len(batches) == 3 and sum(int(b["mask"].sum()) for b in batches) == 9


def test_cmyk_and_png_named_jpeg_decode_to_rgb(tf):
    from input_pipeline import preprocess

    image = np.zeros((24, 32, 3), np.uint8)
    image[:, :, 0] = 200  # red: a CMYK decode that forgot to convert would not come back red
    for payload in (jpeg_bytes(image, mode="CMYK"), jpeg_bytes(image, fmt="PNG")):
        decoded = preprocess.decode_full(tf.constant(payload)).numpy()
        assert decoded.shape == (24, 32, 3)
        assert np.abs(decoded.astype(int) - image).max() <= 8


# --- eval padding over processes ----------------------------------------------------------------


def test_eval_counts_every_image_once_over_processes(tmp_path, tf):
    root = tmp_path / "folder"
    make_folder(root, {"train": {"a": 2, "b": 2}, "val": {"a": 11, "b": 12}}, seed=3)
    data = data_config(f"folder:{root}")
    assert input_pipeline.dataset_info(data).num_eval_examples == 23

    seen: dict[int, list[tuple[int, str]]] = {}
    for process_count in (1, 3):
        seen[process_count] = []
        for process_index in range(process_count):
            batches = list(
                input_pipeline.eval_batches(
                    data,
                    global_batch_size=6,
                    process_index=process_index,
                    process_count=process_count,
                )
            )
            assert len(batches) == 4  # ceil(23 / 6) on every process, padding included
            for batch in batches:
                assert batch["image"].shape[0] == 6 // process_count
                for image, label in zip(
                    batch["image"][batch["mask"]], batch["label"][batch["mask"]], strict=True
                ):
                    seen[process_count].append((int(label), fingerprint(image)))
    assert len(seen[1]) == 23 and len(set(seen[1])) == 23
    assert sorted(seen[3]) == sorted(seen[1])

    # data.crop_pct / data.interpolation, when set, win over the arguments (the model's defaults).
    default = next(input_pipeline.eval_batches(data, global_batch_size=6))["image"]
    explicit = next(
        input_pipeline.eval_batches(
            data, global_batch_size=6, crop_pct=1.0, interpolation="bicubic"
        )
    )["image"]
    data.crop_pct, data.interpolation = 1.0, "bicubic"
    overridden = next(input_pipeline.eval_batches(data, global_batch_size=6))["image"]
    np.testing.assert_array_equal(explicit, overridden)
    assert not np.array_equal(explicit, default)


def _eval_shards(data, global_batch_size: int, process_count: int) -> list[list[dict]]:
    """The eval batches each of `process_count` processes reads, in process order."""
    return [
        list(
            input_pipeline.eval_batches(
                data,
                global_batch_size=global_batch_size,
                process_index=process_index,
                process_count=process_count,
            )
        )
        for process_index in range(process_count)
    ]


def test_synthetic_eval_masks_cover_the_split_once():
    data = data_config("synthetic", synthetic_eval_examples=23)
    for process_count in (1, 3):
        shards = _eval_shards(data, 6, process_count)
        assert [len(batches) for batches in shards] == [4] * process_count
        assert sum(int(b["mask"].sum()) for batches in shards for b in batches) == 23


# --- resume determinism -------------------------------------------------------------------------


AUGMENTED = dict(  # every host-side augmentation on, at the strength of the recipes
    auto_augment="rand-m9-mstd0.5-inc1",
    color_jitter=0.4,
    random_erase=0.25,
    crop_min=0.05,
    crop_max=0.9,
    ratio_min=0.5,
    ratio_max=2.0,
)


@pytest.mark.parametrize("cache,augment", [(False, {}), (True, {}), (False, AUGMENTED)])
def test_resumed_run_sees_the_same_batches(tmp_path, tf, cache, augment):
    root = tmp_path / "folder"
    make_folder(root, {"train": {"a": 21, "b": 21}, "val": {"a": 1}}, seed=7)
    data = data_config(f"folder:{root}", cache=cache, **augment)
    kwargs = dict(global_batch_size=8, seed=3)  # 42 // 8 = 5 steps per epoch, 2 dropped each epoch
    reference = take(input_pipeline.train_batches(data, **kwargs), 13)
    for start_step in (3, 7):  # mid-epoch 0; mid-epoch 1, after an epoch boundary
        resumed = take(
            input_pipeline.train_batches(data, start_step=start_step, **kwargs), 13 - start_step
        )
        for a, b in zip(reference[start_step:], resumed, strict=True):
            assert (
                a.keys()
                == b.keys()
                == (
                    {"image", "label", "erase"} if "random_erase" in augment else {"image", "label"}
                )
            )
            for key in a:
                np.testing.assert_array_equal(a[key], b[key])

    # Epochs reshuffle; another seed gives other batches.
    epoch_labels = [np.concatenate([b["label"] for b in reference[i : i + 5]]) for i in (0, 5)]
    assert not np.array_equal(*epoch_labels)
    other = next(input_pipeline.train_batches(data, global_batch_size=8, seed=4))
    assert not np.array_equal(reference[0]["image"], other["image"])


def test_train_processes_get_disjoint_shards(tmp_path, tf):
    root = tmp_path / "folder"
    make_folder(root, {"train": {"a": 8, "b": 8}, "val": {"a": 1}}, seed=9)
    data = data_config(
        f"folder:{root}", crop_min=1.0
    )  # near-whole-image crops: compare by label mix
    per_process = [
        take(
            input_pipeline.train_batches(
                data, global_batch_size=8, seed=0, process_index=i, process_count=2
            ),
            2,
        )
        for i in range(2)
    ]
    for batches in per_process:
        assert all(b["image"].shape == (4, SIZE, SIZE, 3) for b in batches)
        labels = np.concatenate([b["label"] for b in batches])
        assert sorted(labels.tolist()) == [0] * 4 + [1] * 4  # strided shards hold every class
    with pytest.raises(ValueError, match="multiple of the process count"):
        input_pipeline.train_batches(data, global_batch_size=9, seed=0, process_count=2)


# --- synthetic, no TensorFlow -------------------------------------------------------------------


def test_synthetic_source_never_imports_tensorflow():
    code = """
import sys
import input_pipeline
from configs.base import get_config
data = get_config().data
data.source = "synthetic"
data.image_size = 8
info = input_pipeline.dataset_info(data)
batch = next(input_pipeline.train_batches(data, global_batch_size=4, seed=0))
assert batch["image"].shape == (4, 8, 8, 3) and batch["image"].dtype.name == "uint8"
assert batch["label"].max() < info.num_classes
evals = list(input_pipeline.eval_batches(data, global_batch_size=4096))
assert sum(int(b["mask"].sum()) for b in evals) == info.num_eval_examples
assert "tensorflow" not in sys.modules, "synthetic path imported TensorFlow"
"""
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr


# --- clear errors -------------------------------------------------------------------------------


def test_missing_data_gives_one_line_error_naming_the_directory(tmp_path, tf):
    def error(data) -> str:
        with pytest.raises(DatasetNotFoundError) as info:
            input_pipeline.dataset_info(data)
        message = str(info.value)
        assert "\n" not in message
        return message

    missing = tmp_path / "nowhere"
    message = error(data_config(f"folder:{missing}"))
    assert str(missing / "train") in message and "one sub-folder per class" in message

    only_train = tmp_path / "only_train"
    make_folder(only_train, {"train": {"a": 1}})
    message = error(data_config(f"folder:{only_train}"))
    assert str(only_train / "val") in message

    manual = tmp_path / "manual"
    manual.mkdir()
    message = error(
        data_config("tfds:imagenet2012", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual))
    )
    assert str(manual) in message
    assert "ILSVRC2012_img_train.tar" in message and "ILSVRC2012_img_val.tar" in message

    assert "no dataset of that name" in error(data_config("tfds:no_such_dataset_xyz"))

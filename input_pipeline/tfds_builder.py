"""Opens a TFDS builder, preparing it first if needed, with errors that say what to put where.

Preparing `imagenet2012` reads the ILSVRC2012 tars from the manual directory (TFDS's documented
path); TFDS itself would only log a warning for a missing tar and build a dataset without that
split, so the tars the requested splits need are checked here first.
"""

from __future__ import annotations

import functools
import os
import re
from typing import Any

from absl import logging

from input_pipeline.errors import DatasetNotFoundError

# Builders whose splits come from named manual files: {builder name: {split: file}}.
MANUAL_FILES = {
    "imagenet2012": {
        "train": "ILSVRC2012_img_train.tar",
        "validation": "ILSVRC2012_img_val.tar",
        "test": "ILSVRC2012_img_test.tar",
    },
}
_MANUAL_SOURCES = {"imagenet2012": "https://image-net.org/download-images (after registering)"}


def split_names(split: str) -> list[str]:
    """Base split names in a TFDS split string: 'train[:90%]+validation' -> ['train', 'validation']."""
    return re.findall(r"[A-Za-z_]\w*", re.sub(r"\[[^\]]*\]", "", split))


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _check_manual_files(builder: Any, manual_dir: str, splits: tuple[str, ...]) -> None:
    name = builder.name
    if name in MANUAL_FILES:
        table = MANUAL_FILES[name]
        wanted = sorted({table[s] for split in splits for s in split_names(split) if s in table})
        missing = [f for f in wanted if not os.path.exists(os.path.join(manual_dir, f))]
        if missing:
            raise DatasetNotFoundError(
                f"tfds:{name} is not prepared in {builder.data_dir} and its manual files are missing: "
                f"put {', '.join(missing)} (from {_MANUAL_SOURCES[name]}) in {manual_dir} "
                "(data.manual_dir), or point data.data_dir at a directory where it is prepared"
            )
    elif not os.path.isdir(manual_dir) or not os.listdir(manual_dir):
        raise DatasetNotFoundError(
            f"tfds:{name} is not prepared in {builder.data_dir} and needs files downloaded by hand into "
            f"{manual_dir} (data.manual_dir): {_one_line(builder.MANUAL_DOWNLOAD_INSTRUCTIONS)}"
        )


@functools.lru_cache(maxsize=8)
def prepared_builder(name: str, data_dir: str, manual_dir: str, splits: tuple[str, ...]) -> Any:
    """The builder of `name` ('<name>[:<version>]') in `data_dir`, prepared, holding `splits`."""
    import tensorflow_datasets as tfds

    import input_pipeline.tf_runtime  # noqa: F401  (hides GPUs before TFDS starts TensorFlow)

    try:
        builder = tfds.builder(name, data_dir=data_dir or None)
    except tfds.core.DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"data.source 'tfds:{name}': TFDS has no dataset of that name "
            f"({_one_line(str(e)).split('.')[0]}); check the name on https://www.tensorflow.org/datasets/catalog"
        ) from e
    if not builder.is_prepared():
        manual = manual_dir or os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")
        needs_manual = bool(builder.MANUAL_DOWNLOAD_INSTRUCTIONS)
        if needs_manual:
            _check_manual_files(builder, manual, splits)
        logging.info("input_pipeline: preparing tfds:%s into %s", name, builder.data_dir)
        try:
            builder.download_and_prepare(
                download_config=tfds.download.DownloadConfig(manual_dir=manual)
            )
        except Exception as e:
            if needs_manual:
                raise
            raise DatasetNotFoundError(
                f"tfds:{name} is not prepared in {builder.data_dir} and downloading it failed "
                f"({type(e).__name__}: {_one_line(str(e))[:200]}); prepare it where there is network "
                "access and copy it there, or point data.data_dir at a prepared copy"
            ) from e
    available = set(builder.info.splits.keys())
    for split in splits:
        for base in split_names(split):
            if base not in available:
                raise DatasetNotFoundError(
                    f"tfds:{name} in {builder.data_dir} has no split {base!r} (it has "
                    f"{', '.join(sorted(available)) or 'none'}); add its source files and delete "
                    f"{builder.data_dir} to rebuild, or change data.train_split / data.eval_split"
                )
    return builder

"""Lists an ImageFolder tree `<root>/<split>/<class>/...` (the MindSpore model-zoo layout).

Listing is ours rather than tfds ImageFolder's because we need a deterministic file order that each
process can shard itself, and ImageFolder cannot subsplit. Labels index the sorted class folder
names of all the splits in use, so train and eval agree even when one split lacks a class.
Framework-free (numpy only): the MindSpore side (ascend_port/data.py) takes its class -> label
map from `class_names` too, so a checkpoint trained on one side is evaluated with the same labels
on the other.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np
from absl import logging

from input_pipeline.errors import DatasetNotFoundError

# What tf.io.decode_image reads; other files (thumbnails, READMEs) are ignored, not counted.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp")

_LAYOUT_HINT = "one sub-folder per class holding that class's images (e.g. {d}/n01440764/x.JPEG)"


@dataclasses.dataclass(frozen=True)
class FolderSplit:
    directory: str
    paths: np.ndarray  # str, sorted by (class, relative path)
    labels: np.ndarray  # int32 index into the class names


def split_directory(root: str, split: str) -> str:
    """The folder holding `split`; 'validation' is the `val/` folder of the usual layout."""
    if "[" in split or "+" in split:
        raise ValueError(f"folder sources take a plain split folder name, not {split!r}")
    return os.path.join(root, "val" if split == "validation" else split)


def _require_split_dir(root: str, split: str) -> str:
    directory = split_directory(root, split)
    if not os.path.isdir(root):
        raise DatasetNotFoundError(
            f"dataset folder {root} does not exist: create it with {directory} holding "
            + _LAYOUT_HINT.format(d=directory)
        )
    if not os.path.isdir(directory):
        raise DatasetNotFoundError(
            f"split {split!r} of {root}: expected folder {directory} with "
            + _LAYOUT_HINT.format(d=directory)
        )
    return directory


def _class_dirs(directory: str) -> list[str]:
    return sorted(
        e.name for e in os.scandir(directory) if e.is_dir() and not e.name.startswith(".")
    )


def class_names(root: str, splits: tuple[str, ...]) -> tuple[str, ...]:
    """Sorted union of the class folder names (hidden ones skipped) of those of `splits` whose
    folder exists (at least one must). The class -> label rule of both environments."""
    present = [s for s in splits if os.path.isdir(split_directory(root, s))]
    names: set[str] = set()
    for split in present or splits[:1]:  # none present: the first one's error names what to do
        names.update(_class_dirs(_require_split_dir(root, split)))
    if not names:
        raise DatasetNotFoundError(
            f"no class folders under {', '.join(split_directory(root, s) for s in splits)}: put "
            + _LAYOUT_HINT.format(d=split_directory(root, splits[0]))
        )
    return tuple(sorted(names))


_warned_empty: set[str] = set()


def _warn_empty(folder: str, label: int) -> None:
    """An empty class folder still takes a label (indices follow the sorted names): say so once."""
    if folder not in _warned_empty:
        _warned_empty.add(folder)
        logging.warning(
            "class folder %s holds no images (%s); it still counts as class %d",
            folder,
            ", ".join(IMAGE_EXTENSIONS),
            label,
        )


def list_split(root: str, split: str, names: tuple[str, ...]) -> FolderSplit:
    """Every image file of a split (recursively inside each class folder) in a fixed order."""
    directory = _require_split_dir(root, split)
    index = {name: i for i, name in enumerate(names)}
    paths: list[str] = []
    labels: list[int] = []
    for name in _class_dirs(directory):
        if name not in index:
            raise ValueError(
                f"class folder {name!r} in {directory} is not among the classes {names}"
            )
        found = []
        for parent, dirs, files in os.walk(os.path.join(directory, name)):
            dirs[:] = [d for d in dirs if not d.startswith(".")]
            found.extend(
                os.path.join(parent, f)
                for f in files
                if not f.startswith(".") and f.lower().endswith(IMAGE_EXTENSIONS)
            )
        found.sort()
        if not found:
            _warn_empty(os.path.join(directory, name), index[name])
        paths.extend(found)
        labels.extend([index[name]] * len(found))
    if not paths:
        raise DatasetNotFoundError(
            f"no image files ({', '.join(IMAGE_EXTENSIONS)}) in {directory}: put "
            + _LAYOUT_HINT.format(d=directory)
        )
    return FolderSplit(directory, np.asarray(paths, dtype=str), np.asarray(labels, dtype=np.int32))

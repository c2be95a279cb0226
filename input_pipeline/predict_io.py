"""What `--mode=predict` reads and writes, the same on the JAX and the MindSpore side.

The image list (`--images a.jpg,dir/`), the class names of a data source, the top-5 of a batch of
logits, the table people read and the JSON machines read. numpy and the standard library only, so
that both environments import this one module and cannot drift apart.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from input_pipeline import folder
from input_pipeline.sources import parse_source

TOP_K = 5
# ILSVRC2012 class order of TFDS's imagenet2012 builder (its labels.txt) with the synset words.
_IMAGENET_TABLE = os.path.join(os.path.dirname(__file__), "imagenet2012_classes.tsv")
_NAME_WIDTH = 40  # table column; the JSON keeps whole names


class ImagesError(ValueError):
    """--images names nothing predict can read (a missing path, a folder without images)."""


def list_images(spec: str) -> list[str]:
    """Comma-separated files and folders -> image files, in the given order; folders are walked
    recursively and sorted. A file is taken whatever its extension (the decoder judges it)."""
    entries = [s.strip() for s in spec.split(",") if s.strip()]
    if not entries:
        raise ImagesError("--images is empty: pass image files and/or folders, comma-separated")
    paths: list[str] = []
    for entry in entries:
        path = os.path.expanduser(entry)
        if os.path.isfile(path):
            paths.append(path)
        elif os.path.isdir(path):
            found = sorted(
                os.path.join(parent, f)
                for parent, dirs, files in os.walk(path)
                for f in files
                if not f.startswith(".") and f.lower().endswith(folder.IMAGE_EXTENSIONS)
            )
            if not found:
                raise ImagesError(
                    f"--images: folder {entry} holds no image files "
                    f"({', '.join(folder.IMAGE_EXTENSIONS)})"
                )
            paths.extend(found)
        else:
            raise ImagesError(f"--images: {entry} is neither a file nor a folder")
    return paths


def imagenet_class_names() -> tuple[str, ...]:
    """The 1000 ILSVRC2012 synset words ('tench, Tinca tinca', ...) in TFDS's label order."""
    with open(_IMAGENET_TABLE) as f:
        return tuple(line.rstrip("\n").split("\t", 1)[1] for line in f)


def imagenet_wnids() -> tuple[str, ...]:
    with open(_IMAGENET_TABLE) as f:
        return tuple(line.split("\t", 1)[0] for line in f)


def class_names(data: Any, num_classes: int) -> tuple[str, ...] | None:
    """Class names for `data.source` without reading the dataset: ImageFolder class folders,
    digits 0-9, the ImageNet synset words; None where only the dataset itself knows them
    (other TFDS datasets, a folder that is not there) or the count does not match the model."""
    spec = parse_source(data.source)
    names: tuple[str, ...] | None = None
    if spec.kind == "digits":
        names = tuple(str(i) for i in range(10))
    elif spec.kind == "folder":
        try:
            names = folder.class_names(
                os.path.expanduser(spec.path), (data.train_split, data.eval_split)
            )
        except (OSError, ValueError):
            names = None
    elif spec.kind == "tfds" and spec.name.split(":")[0] == "imagenet2012":
        names = imagenet_class_names()
    if names is not None and len(names) != num_classes:
        return None
    return names


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (probabilities comparable across frameworks)."""
    z = np.asarray(logits, np.float64)
    z = np.exp(z - z.max(axis=-1, keepdims=True))
    return z / z.sum(axis=-1, keepdims=True)


def top_k(
    logits: np.ndarray, names: Sequence[str] | None, k: int = TOP_K
) -> list[list[dict[str, Any]]]:
    """Per row: the k most probable classes, [{'class': index, 'name': str, 'prob': float}]."""
    probs = softmax(logits)
    k = min(k, probs.shape[-1])
    ranked = np.argsort(-probs, axis=-1, kind="stable")[:, :k]
    return [
        [
            {
                "class": int(c),
                "name": names[c] if names is not None else str(int(c)),
                "prob": float(p[c]),
            }
            for c in row
        ]
        for row, p in zip(ranked, probs, strict=True)
    ]


def format_table(predictions: Sequence[dict[str, Any]]) -> str:
    """One block per image: its path, then rank, probability, class index and name."""
    lines = []
    for pred in predictions:
        lines.append(pred["image"])
        for rank, entry in enumerate(pred["top5"], 1):
            name = entry["name"]
            if len(name) > _NAME_WIDTH:
                name = name[: _NAME_WIDTH - 3] + "..."
            lines.append(f"  {rank}. {100 * entry['prob']:7.3f}%  {entry['class']:>5}  {name}")
    return "\n".join(lines)


def write_json(
    path: str,
    *,
    model: str,
    weights: str,
    predictions: Sequence[dict[str, Any]],
    skipped: Sequence[dict[str, str]],
) -> None:
    """{'model', 'weights', 'predictions': [{'image', 'top5': [...]}], 'skipped': [...]}."""
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    with open(path, "w") as f:
        json.dump(
            {
                "model": model,
                "weights": weights,
                "predictions": list(predictions),
                "skipped": list(skipped),
            },
            f,
            indent=2,
        )


def skip_warning(path: str, reason: str) -> str:
    """The one stderr line for an image that cannot be read."""
    reason = " ".join(str(reason).split())[:200]
    return f"warning: skipped {path}: cannot decode it as an image ({reason})"

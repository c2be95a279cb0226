"""The embedded dataset: scikit-learn's 1,797 handwritten digit scans as an ImageFolder tree.

It is real data that ships inside a wheel, so a fresh checkout can show that training learns with
no download. The tree is written once (upscaled RGB JPEGs, a fixed stratified 80/20 split) and is
then read through the same folder source as user data. It is written into a temporary directory and
renamed into place, so a crash never leaves a half-written tree where a reader would trust it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile

import numpy as np

from input_pipeline.errors import DatasetNotFoundError

TREE_NAME = "digits-v1"  # bump when anything below changes, so old trees are not reused
IMAGE_SIZE = 32
VAL_FRACTION = 0.2
SPLIT_SEED = 0
JPEG_QUALITY = 95
MANIFEST = "manifest.json"
# Per-class split of the fixed seed above; the tests pin these.
NUM_TRAIN = 1438
NUM_VAL = 359


def default_root() -> str:
    """`$HHL_DATA_DIR/digits-v1`, else `~/.cache/hhl-cls/digits-v1`."""
    base = os.environ.get("HHL_DATA_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "hhl-cls"
    )
    return os.path.join(base, TREE_NAME)


def write_tree(dest: str) -> dict[str, int]:
    """Writes `dest/{train,val}/<digit>/<index>.jpg`; returns the split sizes. Not atomic."""
    from PIL import Image
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = np.round(digits.images * (255.0 / 16.0)).astype(np.uint8)
    targets = digits.target
    rng = np.random.default_rng(SPLIT_SEED)
    sizes = {"train": 0, "val": 0}
    for label in range(10):
        members = rng.permutation(np.flatnonzero(targets == label))
        num_val = round(len(members) * VAL_FRACTION)
        for split, indices in (("val", members[:num_val]), ("train", members[num_val:])):
            class_dir = os.path.join(dest, split, str(label))
            os.makedirs(class_dir, exist_ok=True)
            for index in sorted(indices.tolist()):
                image = Image.fromarray(pixels[index])  # uint8 2-D: greyscale
                image = image.resize((IMAGE_SIZE, IMAGE_SIZE), Image.Resampling.BILINEAR).convert(
                    "RGB"
                )
                image.save(os.path.join(class_dir, f"{index:04d}.jpg"), quality=JPEG_QUALITY)
            sizes[split] += len(indices)
    with open(os.path.join(dest, MANIFEST), "w") as f:
        json.dump({**sizes, "image_size": IMAGE_SIZE, "split_seed": SPLIT_SEED}, f)
    return sizes


def ensure_tree(root: str | None = None) -> str:
    """Returns the tree's root, writing it first if no complete tree is there."""
    root = root or default_root()
    if os.path.exists(os.path.join(root, MANIFEST)):
        return root
    if os.path.exists(root):
        raise DatasetNotFoundError(
            f"{root} exists but is not a complete digits tree (no {MANIFEST}); delete it and it is rewritten"
        )
    parent = os.path.dirname(os.path.abspath(root))
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{TREE_NAME}.tmp-", dir=parent)
    try:
        write_tree(tmp)
        try:
            os.rename(tmp, root)
        except OSError:  # another process renamed its copy first
            if not os.path.exists(os.path.join(root, MANIFEST)):
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return root

"""Small datasets made on the fly: noise JPEG folders with ImageNet's landmine files, and tiny
fake ILSVRC2012 tars for the real TFDS imagenet2012 builder path."""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
from PIL import Image


def jpeg_bytes(array: np.ndarray, mode: str = "RGB", fmt: str = "JPEG") -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).convert(mode).save(buffer, fmt, quality=90)
    return buffer.getvalue()


def random_image(rng: np.random.Generator) -> np.ndarray:
    """Noise of a random size and aspect ratio, so crops and the short-side rule get exercised."""
    height, width = rng.integers(20, 41, size=2)
    return rng.integers(0, 256, (height, width, 3), dtype=np.uint8)


def make_folder(root, counts: dict[str, dict[str, int]], seed: int = 0) -> None:
    """root/<split>/<class>/<i>.JPEG with counts[split][class] distinct noise images."""
    rng = np.random.default_rng(seed)
    for split, per_class in counts.items():
        for name, count in per_class.items():
            class_dir = os.path.join(root, split, name)
            os.makedirs(class_dir, exist_ok=True)
            for i in range(count):
                with open(os.path.join(class_dir, f"{i:03d}.JPEG"), "wb") as f:
                    f.write(jpeg_bytes(random_image(rng)))


def add_bad_files(class_dir: str, rng: np.random.Generator) -> None:
    """The landmines of raw ImageNet folders: PNG named .JPEG, CMYK JPEG, truncated JPEG; + garbage."""
    with open(os.path.join(class_dir, "png_named.JPEG"), "wb") as f:
        f.write(jpeg_bytes(random_image(rng), fmt="PNG"))
    with open(os.path.join(class_dir, "cmyk.JPEG"), "wb") as f:
        f.write(jpeg_bytes(random_image(rng), mode="CMYK"))
    whole = jpeg_bytes(random_image(rng))
    with open(os.path.join(class_dir, "truncated.JPEG"), "wb") as f:
        f.write(whole[: len(whole) // 2])
    with open(os.path.join(class_dir, "garbage.JPEG"), "wb") as f:
        f.write(b"this is not an image\n")


def imagenet_wnids(count: int) -> list[str]:
    """Real ImageNet wnids from the builder's bundled label file (unknown ones raise KeyError)."""
    import tensorflow_datasets as tfds

    path = tfds.core.tfds_path("datasets/imagenet2012/labels.txt")
    return path.read_text().split()[:count]


def make_fake_ilsvrc(manual_dir, wnids: list[str], per_class: int, num_val: int) -> None:
    """ILSVRC2012_img_train.tar (an outer tar of <wnid>.tar) and a flat ILSVRC2012_img_val.tar."""
    os.makedirs(manual_dir, exist_ok=True)
    rng = np.random.default_rng(1)

    def add(tar: tarfile.TarFile, name: str, payload: bytes) -> None:
        member = tarfile.TarInfo(name)
        member.size = len(payload)
        tar.addfile(member, io.BytesIO(payload))

    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_train.tar"), "w") as outer:
        for wnid in wnids:
            inner_bytes = io.BytesIO()
            with tarfile.open(fileobj=inner_bytes, mode="w") as inner:
                for i in range(per_class):
                    add(inner, f"{wnid}_{i}.JPEG", jpeg_bytes(random_image(rng)))
            add(outer, f"{wnid}.tar", inner_bytes.getvalue())
    with tarfile.open(os.path.join(manual_dir, "ILSVRC2012_img_val.tar"), "w") as val:
        for i in range(1, num_val + 1):
            add(val, f"ILSVRC2012_val_{i:08d}.JPEG", jpeg_bytes(random_image(rng)))

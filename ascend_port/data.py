"""ImageFolder input for the MindSpore CLIs, with the JAX side's preprocessing (configs/base.py).

Train: random-resized-crop (area data.crop_min..crop_max, aspect data.ratio_min..ratio_max) to
data.image_size, horizontal flip if data.random_flip, data.auto_augment and data.color_jitter,
mean/std normalisation, data.random_erase. Eval: input_pipeline.preprocess.eval_image's geometry exactly - crop
the centred square that "resize the short side to int(image_size / crop_pct), centre-crop
image_size" keeps, then resize it to image_size with PIL's antialiased filter (the JAX side
resizes with tf.image.resize(antialias=True): the same filters up to rounding) - then
normalisation. Both sides decode JPEGs with the accurate IDCT (input_pipeline/preprocess.py
asks TF for it; its default fast IDCT was up to 14 grey levels off on the digits). crop_pct, interpolation, mean and std default to the model's metadata. Labels follow
input_pipeline.folder.class_names, the JAX side's rule (one implementation for both sides).
"""

from __future__ import annotations

import dataclasses
import os

import mindspore as ms
import mindspore.dataset as msds
import mindspore.dataset.transforms as T
import mindspore.dataset.vision as V
import numpy as np
from ml_collections import ConfigDict
from PIL import Image

from ascend_port import augment, registry
from ascend_port.mixup import BatchMixup
from input_pipeline import folder
from train_lib.recipes import mixup as mixup_rule

_INTERPOLATION = {"bilinear": V.Inter.BILINEAR, "bicubic": V.Inter.BICUBIC}
_PIL_INTERPOLATION = {V.Inter.BILINEAR: Image.BILINEAR, V.Inter.BICUBIC: Image.BICUBIC}


def _digits_root() -> str:
    """The embedded digits tree, where input_pipeline.digits puts it ($HHL_DATA_DIR or the user
    cache). That module imports without TF/jax, but writing the tree needs scikit-learn, which
    this environment lacks, so the JAX side must have written it once."""
    from input_pipeline import digits

    root = digits.default_root()
    if not os.path.exists(os.path.join(root, digits.MANIFEST)):
        raise FileNotFoundError(
            f"data.source=digits: no digits tree at {root}; write it from the JAX environment with "
            "`.venv/bin/python -c 'from input_pipeline import digits; digits.ensure_tree()'` "
            "(same $HHL_DATA_DIR), or pass --config.data.source=folder:<tree>"
        )
    return root


def resolve_root(data: str) -> str:
    """config.data.source -> ImageFolder root (holding train/<class>/ and val/<class>/).

    Accepts 'folder:<path>', 'digits' and a plain path.
    """
    if data == "digits":
        root = _digits_root()
    elif data.startswith("folder:"):
        root = data[len("folder:") :]
    else:
        root = data
    if not os.path.isdir(root):
        raise FileNotFoundError(f"data root {root!r} is not a directory")
    return root


def split_dir(root: str, split: str) -> str:
    path = os.path.join(root, "val" if split == "validation" else split)
    if not os.path.isdir(path):
        raise FileNotFoundError(
            f"split folder {path!r} not found (expected <root>/{split}/<class>/)"
        )
    return path


def class_indexing(config: ConfigDict, root: str) -> dict[str, int]:
    """{class folder: label} by input_pipeline.folder's rule, the JAX side's: the sorted union
    of the class folders of data.train_split and data.eval_split, hidden folders skipped."""
    names = folder.class_names(root, (config.data.train_split, config.data.eval_split))
    return {c: i for i, c in enumerate(names)}


@dataclasses.dataclass(frozen=True)
class Preprocess:
    image_size: int
    crop_pct: float
    crop_min: float
    flip: bool
    interpolation: V.Inter
    mean: tuple[float, ...]  # 0..255 scale
    std: tuple[float, ...]
    crop_max: float = 1.0
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    auto_augment: str = ""  # data.auto_augment, data.color_jitter, data.random_erase
    color_jitter: float = 0.0
    random_erase: float = 0.0


def preprocess(config: ConfigDict) -> Preprocess:
    """Preprocessing parameters from the config, falling back on the model's metadata."""
    info = registry.info(config.model.name)
    size = config.data.image_size
    crop_pct = config.data.crop_pct if config.data.crop_pct is not None else info.crop_pct
    interpolation = config.data.interpolation or info.interpolation
    if interpolation not in _INTERPOLATION:
        raise ValueError(f"data.interpolation {interpolation!r}; known: {sorted(_INTERPOLATION)}")
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"data.crop_pct must be in (0, 1], got {crop_pct}")
    return Preprocess(
        image_size=size,
        crop_pct=crop_pct,
        crop_min=config.data.crop_min,
        flip=config.data.random_flip,
        crop_max=config.data.crop_max,
        ratio=(config.data.ratio_min, config.data.ratio_max),
        auto_augment=config.data.auto_augment,
        color_jitter=config.data.color_jitter,
        random_erase=config.data.random_erase,
        interpolation=_INTERPOLATION[interpolation],
        mean=tuple(255.0 * m for m in info.mean),
        std=tuple(255.0 * s for s in info.std),
    )


class CentreCropResize:
    """Eval geometry of input_pipeline.preprocess.eval_image on a PIL image -> uint8 HWC.

    The centred square of side round(short * size / int(size / crop_pct)) (float32, ties to
    even, as tf.round), top-left ((h - crop + 1) // 2, (w - crop + 1) // 2), resized to
    size x size. Cropping first and resizing once is what the JAX side does; resizing the whole
    image first and cropping after picks a slightly different window and resamples twice.
    """

    def __init__(self, size: int, crop_pct: float, interpolation: V.Inter):
        self.size, self.crop_pct = size, crop_pct
        self.resample = _PIL_INTERPOLATION[interpolation]

    def window(self, height: int, width: int) -> tuple[int, int, int]:
        """(top, left, side) of the crop in an image of height x width."""
        scale_size = int(self.size / self.crop_pct)
        short = min(height, width)
        crop = int(np.round(np.float32(short) * np.float32(self.size / scale_size)))
        crop = min(max(crop, 1), short)
        return (height - crop + 1) // 2, (width - crop + 1) // 2, crop

    def __call__(self, image: Image.Image) -> np.ndarray:
        top, left, crop = self.window(image.height, image.width)
        image = image.convert("RGB").crop((left, top, left + crop, top + crop))
        # PIL widens its filter when shrinking: the antialiased resize of the JAX side.
        return np.asarray(image.resize((self.size, self.size), self.resample), dtype=np.uint8)


def _ops(p: Preprocess, train: bool) -> list:
    if train:
        geometry = [
            V.Decode(),
            V.RandomResizedCrop(
                p.image_size,
                scale=(p.crop_min, p.crop_max),
                ratio=p.ratio,
                interpolation=p.interpolation,
            ),
        ]
        if p.flip:  # data.random_flip (off for digits: a mirrored 2 is not a 2)
            geometry.append(V.RandomHorizontalFlip())
        # timm's order: AutoAugment/RandAugment and colour jitter on the crop, erasing on the
        # normalised CHW image (ascend_port/augment.py says which definition each follows).
        before, after = augment.train_ops(p)
        return [*geometry, *before, V.Normalize(mean=p.mean, std=p.std), V.HWC2CHW(), *after]
    geometry = [
        V.Decode(to_pil=True),
        CentreCropResize(p.image_size, p.crop_pct, p.interpolation),
    ]
    return [*geometry, V.Normalize(mean=p.mean, std=p.std), V.HWC2CHW()]


def num_train_images(config: ConfigDict, root: str) -> int:
    return msds.ImageFolderDataset(
        split_dir(root, config.data.train_split), class_indexing=class_indexing(config, root)
    ).get_dataset_size()


def train_dataset(
    config: ConfigDict,
    root: str,
    *,
    batch_size: int,
    rank: int = 0,
    group_size: int = 1,
    sampler: msds.Sampler | None = None,
) -> msds.Dataset:
    """Shuffled, augmented, batched (drop_remainder) per-device shard of the train split; a
    `sampler` (ascend_port.sampler) replaces MindSpore's shuffle and sharding."""
    workers = max(1, config.data.num_workers) if config.data.num_workers > 0 else None
    order = (
        {"sampler": sampler}
        if sampler is not None
        else {
            "shuffle": True,
            "num_shards": group_size if group_size > 1 else None,
            "shard_id": rank if group_size > 1 else None,
        }
    )
    ds = msds.ImageFolderDataset(
        split_dir(root, config.data.train_split),
        class_indexing=class_indexing(config, root),
        num_parallel_workers=workers,
        **order,
    )
    ds = ds.map(
        operations=_ops(preprocess(config), train=True),
        input_columns="image",
        num_parallel_workers=workers,
    )
    ds = ds.map(operations=T.TypeCast(ms.int32), input_columns="label")
    spec = mixup_rule.spec(config)
    if not spec.enabled:
        return ds.batch(batch_size, drop_remainder=True)
    # Mixup / cutmix per batch: labels become soft float32 targets (losses.SoftTargetCrossEntropy).
    mixer = BatchMixup(
        spec, config.model.num_classes, config.train.label_smoothing, seed=config.seed, rank=rank
    )
    return ds.batch(
        batch_size, drop_remainder=True, per_batch_map=mixer, input_columns=["image", "label"]
    )


def eval_dataset(config: ConfigDict, root: str, *, batch_size: int) -> tuple[msds.Dataset, int]:
    """(batched eval split in file order, keeping the last partial batch; number of images)."""
    ds = msds.ImageFolderDataset(
        split_dir(root, config.data.eval_split),
        shuffle=False,
        class_indexing=class_indexing(config, root),
    )
    count = ds.get_dataset_size()
    ds = ds.map(operations=_ops(preprocess(config), train=False), input_columns="image")
    ds = ds.map(operations=T.TypeCast(ms.int32), input_columns="label")
    return ds.batch(batch_size, drop_remainder=False), count

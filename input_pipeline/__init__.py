"""Input pipeline: datasets in, uint8 host batches out.

    info = input_pipeline.dataset_info(config.data)
    for batch in input_pipeline.train_batches(config.data, global_batch_size=256, seed=0, start_step=k):
        ...  # {'image': uint8 [local_batch, S, S, 3], 'label': int32 [local_batch]}, forever
    for batch in input_pipeline.eval_batches(config.data, global_batch_size=256):
        ...  # + 'mask' (bool); every process yields ceil(num_eval / global_batch) batches

Sources (`data.source`): `tfds:<name>[:<version>]`, `folder:<path>`, `digits`, `synthetic`.
Nothing here knows about models; TensorFlow is imported only when a real source is read, so this
package and the synthetic source load without it. A dataset that is not where the config says raises
`DatasetNotFoundError`, whose one-line message names the directory expected and what to put there.

Counts: `num_train_examples` is the number of train files/records (an undecodable training file
keeps its slot and is replaced by another image of its batch); `num_eval_examples` counts the eval
images that decode (folder sources scan the eval split once per process and log what they leave out).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import TYPE_CHECKING

import numpy as np

from input_pipeline.errors import DatasetNotFoundError
from input_pipeline.sources import parse_source

if TYPE_CHECKING:
    from ml_collections import ConfigDict

    from input_pipeline.readers import Reader

__all__ = ["DatasetInfo", "DatasetNotFoundError", "dataset_info", "eval_batches", "train_batches"]

SYNTHETIC_TRAIN_EXAMPLES = 1_281_167  # synthetic epoch length when data.num_train_examples is unset


@dataclasses.dataclass(frozen=True)
class DatasetInfo:
    num_classes: int
    num_train_examples: int  # files/records of the train split, or data.num_train_examples if set
    num_eval_examples: int  # images that the eval masks count (decodable ones, for folders)
    class_names: tuple[str, ...] | None


def _local_batch(global_batch_size: int, process_count: int) -> int:
    if global_batch_size <= 0 or global_batch_size % process_count:
        raise ValueError(
            f"global batch size {global_batch_size} must be a positive multiple of the process "
            f"count {process_count}"
        )
    return global_batch_size // process_count


def _reader(
    data: ConfigDict, training: bool, process_index: int = 0, process_count: int = 1
) -> Reader:
    from input_pipeline import readers

    key = readers.reader_key(
        data, training=training, process_index=process_index, process_count=process_count
    )
    return readers.open_reader(key)


def dataset_info(data: ConfigDict) -> DatasetInfo:
    """Class count, split sizes and class names; prepares/writes the dataset if it must.

    `data.num_train_examples`, when set, replaces the train count reported here (for schedules);
    it does not change what an epoch of `train_batches` is.
    """
    override = data.get("num_train_examples")
    if parse_source(data.source).kind == "synthetic":
        return DatasetInfo(
            num_classes=int(data.synthetic_num_classes),
            num_train_examples=override or SYNTHETIC_TRAIN_EXAMPLES,
            num_eval_examples=int(data.synthetic_eval_examples),
            class_names=None,
        )
    train, evaluation = _reader(data, True), _reader(data, False)
    names = train.class_names
    if names is None:
        raise ValueError(f"{data.source} has no class names to count classes from")
    return DatasetInfo(
        num_classes=len(names),
        num_train_examples=override or train.num_examples,
        num_eval_examples=evaluation.num_examples,
        class_names=tuple(names),
    )


def train_batches(
    data: ConfigDict,
    *,
    global_batch_size: int,
    seed: int,
    start_step: int = 0,
    process_index: int = 0,
    process_count: int = 1,
    interpolation: str = "bilinear",
) -> Iterator[dict[str, np.ndarray]]:
    """Endless training batches, identical from `start_step` on whether or not the run resumed.

    `data.interpolation`, when set, overrides `interpolation` (the caller passes the model's).
    """
    local_batch = _local_batch(global_batch_size, process_count)
    interpolation = data.get("interpolation") or interpolation
    if parse_source(data.source).kind == "synthetic":
        from input_pipeline import synthetic

        return synthetic.train_batches(
            local_batch=local_batch,
            image_size=data.image_size,
            num_classes=data.synthetic_num_classes,
            seed=seed,
            process_index=process_index,
        )
    from input_pipeline import pipeline

    return pipeline.train_iterator(
        _reader(data, True, process_index, process_count),
        global_batch_size=global_batch_size,
        start_step=start_step,
        cfg=pipeline.TrainSettings(
            local_batch=local_batch,
            seed=seed,
            process_index=process_index,
            image_size=data.image_size,
            crop_min=data.crop_min,
            random_flip=data.random_flip,
            interpolation=interpolation,
            num_workers=data.num_workers,
            crop_max=data.get("crop_max", 1.0),
            aspect_range=(data.get("ratio_min", 3 / 4), data.get("ratio_max", 4 / 3)),
            auto_augment=data.get("auto_augment", ""),
            color_jitter=data.get("color_jitter", 0.0),
            random_erase=data.get("random_erase", 0.0),
        ),
    )


def eval_batches(
    data: ConfigDict,
    *,
    global_batch_size: int,
    process_index: int = 0,
    process_count: int = 1,
    crop_pct: float = 0.875,
    interpolation: str = "bilinear",
) -> Iterator[dict[str, np.ndarray]]:
    """One pass over the eval split; over all processes each image has mask True exactly once.

    `data.crop_pct` / `data.interpolation`, when set, override the arguments (the model's defaults).
    """
    local_batch = _local_batch(global_batch_size, process_count)
    crop_pct = data.get("crop_pct") or crop_pct
    interpolation = data.get("interpolation") or interpolation
    if parse_source(data.source).kind == "synthetic":
        from input_pipeline import synthetic

        return synthetic.eval_batches(
            num_examples=data.synthetic_eval_examples,
            global_batch=global_batch_size,
            local_batch=local_batch,
            image_size=data.image_size,
            num_classes=data.synthetic_num_classes,
            process_index=process_index,
            process_count=process_count,
        )
    from input_pipeline import pipeline

    return pipeline.eval_iterator(
        _reader(data, False, process_index, process_count),
        global_batch_size=global_batch_size,
        local_batch=local_batch,
        image_size=data.image_size,
        crop_pct=crop_pct,
        interpolation=interpolation,
        num_workers=data.num_workers,
    )

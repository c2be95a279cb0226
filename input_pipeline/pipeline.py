"""Batches from a reader: endless, resumable training epochs and one padded eval pass.

Training: epoch e is the reader's records in the order of a seed derived from (seed, e, process);
each record's position in that order seeds its crop and flip. Every epoch has exactly
steps_per_epoch = num_examples // global_batch batches on every process (the remainder is dropped,
a different one each epoch), so step k lives at (epoch, position) = divmod(k, steps_per_epoch) and
a resumed run skips to it before decoding anything. A file that fails to decode keeps its slot; the
host replaces it by another image of the same batch and logs it, so batch boundaries never move.

Eval: one pass in a fixed order, padded with mask=False examples to the same number of batches on
every process.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator

import numpy as np
from absl import logging

from input_pipeline import augment, augment_rules, preprocess
from input_pipeline.readers import Reader, data_options, num_parallel
from input_pipeline.tf_runtime import tf


@dataclasses.dataclass(frozen=True)
class TrainSettings:
    local_batch: int
    seed: int
    process_index: int
    image_size: int
    crop_min: float
    interpolation: str
    random_flip: bool
    num_workers: int
    crop_max: float = 1.0
    aspect_range: tuple[float, float] = preprocess.ASPECT_RANGE
    auto_augment: str = ""  # data.auto_augment (augment_rules syntax)
    color_jitter: float = 0.0
    random_erase: float = 0.0  # > 0: each example carries its erasing box ('erase', int32 [4])


def _decode_all(ds: tf.data.Dataset, per_record, num_workers: int) -> tf.data.Dataset:
    return ds.interleave(
        per_record,
        cycle_length=num_parallel(num_workers),
        block_length=1,
        num_parallel_calls=num_parallel(num_workers),
        deterministic=True,
    )


def _failed(size: int, erase: bool = False):
    def failed(record: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        out = {
            "image": tf.zeros([size, size, 3], tf.uint8),
            "label": record["label"],
            "name": record["name"],
        }
        if erase:
            out["erase"] = tf.zeros([4], tf.int32)
        return out

    return failed


def _epoch_records(
    reader: Reader, epoch: int | tf.Tensor, first: int | tf.Tensor, limit: int, cfg: TrainSettings
) -> tf.data.Dataset:
    """Records at positions [first, limit) of epoch `epoch`, tagged with epoch and position.

    Positions before `first` (consumed before a resume) and from `limit` on (this epoch's dropped
    remainder) are filtered out before anything is decoded.
    """
    epoch = tf.cast(epoch, tf.int64)
    shuffle_seed = tf.random.experimental.stateless_fold_in(
        tf.constant([cfg.seed % 2**63, cfg.process_index], tf.int64), epoch, alg="philox"
    )
    ds = reader.records(shuffle_seed).enumerate()
    ds = ds.filter(lambda pos, rec: tf.logical_and(pos >= first, pos < limit))
    return ds.map(lambda pos, rec: {**rec, "epoch": epoch, "position": pos})


def _train_batches(records: tf.data.Dataset, cfg: TrainSettings) -> tf.data.Dataset:
    spec = augment_rules.parse(cfg.auto_augment)

    def train(r: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        seed = preprocess.example_seed(cfg.seed, r["epoch"], cfg.process_index, r["position"])
        image = preprocess.train_image(
            r["bytes"],
            seed,
            size=cfg.image_size,
            crop_min=cfg.crop_min,
            interpolation=cfg.interpolation,
            flip=cfg.random_flip,
            crop_max=cfg.crop_max,
            aspect_range=cfg.aspect_range,
        )
        out = {"label": r["label"], "name": r["name"]}
        fold_in = tf.random.experimental.stateless_fold_in
        if spec is not None or cfg.color_jitter > 0:  # own seeds: crops stay as without them
            image = augment.augment_image(image, fold_in(seed, 1), spec, cfg.color_jitter)
        if cfg.random_erase > 0:
            out["erase"] = augment.erase_box(
                fold_in(seed, 2), cfg.image_size, cfg.image_size, cfg.random_erase
            )
        return {"image": image, **out}

    failed = _failed(cfg.image_size, erase=cfg.random_erase > 0)
    ds = _decode_all(records, preprocess.guarded(train, failed), cfg.num_workers)
    ds = ds.batch(cfg.local_batch, drop_remainder=True).prefetch(tf.data.AUTOTUNE)
    return ds.with_options(data_options(cfg.num_workers))


class _SkipLog:
    """Replaces undecodable training images in-batch; logs each such file once."""

    def __init__(self) -> None:
        self.names: set[bytes] = set()
        self.replaced = 0

    def repair(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ok = batch["ok"]
        image, label = batch["image"], batch["label"]
        extra = {"erase": batch["erase"]} if "erase" in batch else {}
        if not ok.all():
            good = np.flatnonzero(ok)
            bad = np.flatnonzero(~ok)
            if good.size == 0:
                raise RuntimeError(
                    "no image of a training batch could be decoded (e.g. "
                    f"{batch['name'][0].decode()}); check the dataset files"
                )
            image, label = image.copy(), label.copy()
            donors = good[np.arange(bad.size) % good.size]
            image[bad], label[bad] = image[donors], label[donors]
            self.replaced += bad.size
            for name in batch["name"][bad]:
                if name not in self.names:
                    self.names.add(name)
                    logging.warning(
                        "input_pipeline: skipped undecodable training image %s (%d distinct files, "
                        "%d slots refilled from the same batch so far)",
                        name.decode(),
                        len(self.names),
                        self.replaced,
                    )
        return {"image": image, "label": label, **extra}


def train_iterator(
    reader: Reader, *, global_batch_size: int, start_step: int, cfg: TrainSettings
) -> Iterator[dict[str, np.ndarray]]:
    """Checks the arguments now (not at the first next()) and returns the endless batch stream."""
    steps_per_epoch = reader.num_examples // global_batch_size
    if steps_per_epoch == 0:
        raise ValueError(
            f"the train split has {reader.num_examples} examples, fewer than one global batch "
            f"of {global_batch_size}"
        )
    if start_step < 0:
        raise ValueError(f"start_step must be >= 0, got {start_step}")
    if not 0.0 < cfg.crop_min <= cfg.crop_max <= 1.0:
        raise ValueError(
            f"data.crop_min/crop_max must satisfy 0 < min <= max <= 1, got {cfg.crop_min}, "
            f"{cfg.crop_max}"
        )
    augment_rules.parse(cfg.auto_augment)
    preprocess.check_interpolation(cfg.interpolation)
    reader.prepare()
    return _train_generator(reader, steps_per_epoch, start_step, cfg)


def _train_generator(
    reader: Reader, steps_per_epoch: int, start_step: int, cfg: TrainSettings
) -> Iterator[dict[str, np.ndarray]]:
    limit = steps_per_epoch * cfg.local_batch  # <= every process's shard size
    start_epoch, step = divmod(start_step, steps_per_epoch)
    first = step * cfg.local_batch
    skips = _SkipLog()
    if reader.graph_epochs:  # one endless graph: no restart (and pipeline refill) per epoch
        records = tf.data.Dataset.range(start_epoch, 2**62).flat_map(
            lambda epoch: _epoch_records(
                reader,
                epoch,
                tf.where(epoch == start_epoch, tf.constant(first, tf.int64), 0),
                limit,
                cfg,
            )
        )
        for batch in _train_batches(records, cfg).as_numpy_iterator():
            yield skips.repair(batch)
    else:  # a graph per epoch: the reader needs eager seeds
        epoch = start_epoch
        while True:
            records = _epoch_records(reader, epoch, first, limit, cfg)
            for batch in _train_batches(records, cfg).as_numpy_iterator():
                yield skips.repair(batch)
            epoch, first = epoch + 1, 0


def eval_iterator(
    reader: Reader,
    *,
    global_batch_size: int,
    local_batch: int,
    image_size: int,
    crop_pct: float,
    interpolation: str,
    num_workers: int,
) -> Iterator[dict[str, np.ndarray]]:
    """Checks the arguments and builds the dataset now; returns the padded one-pass batch stream."""
    if not 0.0 < crop_pct <= 1.0:
        raise ValueError(f"crop_pct must be in (0, 1], got {crop_pct}")
    preprocess.check_interpolation(interpolation)
    reader.prepare()

    def evaluate(r: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        image = preprocess.eval_image(
            r["bytes"], size=image_size, crop_pct=crop_pct, interpolation=interpolation
        )
        return {"image": image, "label": r["label"], "name": r["name"]}

    ds = _decode_all(
        reader.records(None), preprocess.guarded(evaluate, _failed(image_size)), num_workers
    )
    ds = ds.batch(local_batch).prefetch(tf.data.AUTOTUNE).with_options(data_options(num_workers))
    return _padded_batches(
        ds,
        num_local_examples=reader.num_local_examples,
        num_batches=math.ceil(reader.num_examples / global_batch_size),
        local_batch=local_batch,
        image_size=image_size,
    )


def _padded_batches(
    ds: tf.data.Dataset,
    *,
    num_local_examples: int,
    num_batches: int,
    local_batch: int,
    image_size: int,
) -> Iterator[dict[str, np.ndarray]]:
    """`ds`'s batches with a mask, the last one padded, then padding batches up to num_batches."""
    padding = {
        "image": np.zeros((local_batch, image_size, image_size, 3), np.uint8),
        "label": np.zeros((local_batch,), np.int32),
        "mask": np.zeros((local_batch,), bool),
    }
    emitted = seen = 0
    for batch in ds.as_numpy_iterator():
        n = len(batch["label"])
        if not batch["ok"].all():  # decoded when the count was taken, fails now: counted as missing
            for name in batch["name"][~batch["ok"]]:
                logging.error("input_pipeline: eval image %s failed to decode", name.decode())
        if n == local_batch:
            out = {"image": batch["image"], "label": batch["label"], "mask": batch["ok"]}
        else:  # the last real batch: fill it up with padding
            out = {k: v.copy() for k, v in padding.items()}
            out["image"][:n], out["label"][:n], out["mask"][:n] = (
                batch["image"],
                batch["label"],
                batch["ok"],
            )
        seen += n
        emitted += 1
        yield out
    if seen != num_local_examples or emitted > num_batches:
        raise RuntimeError(
            f"eval read {seen} examples in {emitted} batches; expected {num_local_examples} "
            f"in at most {num_batches}"
        )
    for _ in range(num_batches - emitted):
        yield dict(padding)

"""Per-process readers of undecoded examples: one split of one source, sharded for this process.

A reader yields records {'bytes': encoded image, 'label': int32, 'name': str} in an order fixed by
a stateless shuffle seed, which is what lets the pipeline rebuild any epoch exactly when a run
resumes. Readers whose order can be drawn from a symbolic seed (`graph_epochs`) let the pipeline
chain epochs inside one tf.data graph, with no restart at epoch boundaries.
Readers are cached per process (`open_reader`), so listings, TFDS builders, the eval decodability
scan and `data.cache` contents are built once and reused across eval passes.
"""

from __future__ import annotations

import dataclasses
import functools
import os
from typing import Any, Protocol

import numpy as np
from absl import logging

from input_pipeline import digits, folder, preprocess, tfds_builder
from input_pipeline.sources import parse_source
from input_pipeline.tf_runtime import tf

_SCAN_LOG_NAMES = 5  # undecodable files named in the log line


def num_parallel(num_workers: int) -> int:
    return num_workers if num_workers > 0 else tf.data.AUTOTUNE


def data_options(num_workers: int) -> tf.data.Options:
    """Deterministic order, a private thread pool, one thread per op (many ops run in parallel)."""
    options = tf.data.Options()
    options.deterministic = True
    options.threading.private_threadpool_size = (
        num_workers if num_workers > 0 else len(os.sched_getaffinity(0))
    )
    options.threading.max_intra_op_parallelism = 1
    options.experimental_optimization.inject_prefetch = False  # we prefetch explicitly, once
    return options


class Reader(Protocol):
    num_examples: int  # the split over all processes
    num_local_examples: int  # this process's shard
    class_names: tuple[str, ...] | None
    graph_epochs: bool  # records() takes a symbolic seed (else an eager one)

    def prepare(self) -> None:
        """Eager set-up before any graph is built: loads the shard into RAM under data.cache."""
        ...

    def records(self, shuffle_seed: tf.Tensor | None) -> tf.data.Dataset:
        """This shard's records, shuffled by an int64 [2] stateless seed, or in fixed order for None."""
        ...


def _order(n: int, shuffle_seed: tf.Tensor | None) -> tf.data.Dataset:
    """Indices 0..n-1, or an exact permutation of them drawn from the seed (symbolic or eager)."""
    if shuffle_seed is None:
        return tf.data.Dataset.range(n)
    return tf.data.Dataset.from_tensor_slices(
        tf.random.experimental.stateless_shuffle(
            tf.range(n, dtype=tf.int64), shuffle_seed, alg="philox"
        )
    )


def _materialize(ds: tf.data.Dataset, n: int) -> dict[str, tf.Tensor]:
    """The n records of `ds` as eager tensors: data.cache's copy of undecoded bytes in host RAM.

    Held as tensors (captured by reference in the graphs) rather than by tf.data's cache() so that
    the order of every epoch can be drawn in-graph, exactly, from a symbolic seed.
    """
    logging.info("input_pipeline: caching %d undecoded examples in RAM", n)
    return ds.batch(n).get_single_element()


def _gather(table: dict[str, tf.Tensor], order: tf.data.Dataset) -> tf.data.Dataset:
    return order.map(lambda i: {k: tf.gather(v, i) for k, v in table.items()})


@dataclasses.dataclass(frozen=True)
class ReaderKey:
    source: str
    root: str  # folder / digits: the resolved tree (digits moves with $HHL_DATA_DIR)
    data_dir: str
    manual_dir: str
    splits: tuple[str, str]  # (train_split, eval_split): both decide class names / the build
    split: str
    training: bool
    process_index: int
    process_count: int
    cache: bool
    shuffle_buffer: int
    num_workers: int


def reader_key(data: Any, *, training: bool, process_index: int, process_count: int) -> ReaderKey:
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} is not in [0, {process_count})")
    spec = parse_source(data.source)
    root = {"folder": os.path.expanduser(spec.path), "digits": digits.default_root()}.get(
        spec.kind, ""
    )
    return ReaderKey(
        source=data.source,
        root=root,
        data_dir=data.data_dir,
        manual_dir=data.manual_dir,
        splits=(data.train_split, data.eval_split),
        split=data.train_split if training else data.eval_split,
        training=training,
        process_index=process_index,
        process_count=process_count,
        cache=bool(data.cache),
        shuffle_buffer=int(data.shuffle_buffer),
        num_workers=int(data.num_workers),
    )


class FolderReader:
    """Files of an ImageFolder split, strided over processes so every shard holds every class."""

    def __init__(
        self, paths: np.ndarray, labels: np.ndarray, key: ReaderKey, names: tuple[str, ...]
    ):
        self.num_examples = len(paths)
        # Eager tensors, so that graphs capture them by reference instead of embedding the list.
        self._paths = tf.constant(paths[key.process_index :: key.process_count], tf.string)
        self._labels = tf.constant(labels[key.process_index :: key.process_count], tf.int32)
        self.num_local_examples = int(self._paths.shape[0])
        self.class_names = names
        self.graph_epochs = True
        self._key = key
        self._table: dict[str, tf.Tensor] | None = None

    def _read(self, order: tf.data.Dataset) -> tf.data.Dataset:
        paths, labels = self._paths, self._labels
        return order.map(
            lambda i: {
                "name": tf.gather(paths, i),
                "label": tf.gather(labels, i),
                "bytes": tf.io.read_file(tf.gather(paths, i)),
            },
            num_parallel_calls=num_parallel(self._key.num_workers),
            deterministic=True,
        )

    def prepare(self) -> None:
        n = self.num_local_examples
        if self._key.cache and self._table is None and n:
            self._table = _materialize(self._read(_order(n, None)), n)

    def records(self, shuffle_seed: tf.Tensor | None) -> tf.data.Dataset:
        # The whole file list is at hand, so shuffling is an exact permutation per epoch.
        order = _order(self.num_local_examples, shuffle_seed)
        return self._read(order) if self._table is None else _gather(self._table, order)


class TfdsReader:
    """A TFDS split read undecoded (SkipDecoding), split over processes with even_splits."""

    def __init__(self, builder: Any, key: ReaderKey):
        import tensorflow_datasets as tfds

        self._tfds = tfds
        self._builder = builder
        self._key = key
        info = builder.info
        self.num_examples = info.splits[key.split].num_examples
        self._subsplit = tfds.split_for_jax_process(
            key.split, process_index=key.process_index, process_count=key.process_count
        )
        self.num_local_examples = info.splits[self._subsplit].num_examples
        keys = info.supervised_keys
        if not (
            isinstance(keys, tuple) and len(keys) == 2 and all(isinstance(k, str) for k in keys)
        ):
            raise ValueError(f"tfds:{builder.name} has no (image, label) supervised keys: {keys}")
        self._image_key, self._label_key = keys
        label_feature = info.features[self._label_key]
        self.class_names = tuple(label_feature.names) if hasattr(label_feature, "names") else None
        # TFDS takes its file-shuffle seed as a Python int, so uncached epochs are built one by one.
        self.graph_epochs = key.cache and self.num_local_examples > 0
        self._table: dict[str, tf.Tensor] | None = None

    def _read(self, shuffle_seed: int | None) -> tf.data.Dataset:
        options = data_options(self._key.num_workers)
        read_config = self._tfds.ReadConfig(
            options=options,
            shuffle_seed=shuffle_seed,
            shuffle_reshuffle_each_iteration=False,  # the pipeline passes a new seed per epoch
            try_autocache=False,
            add_tfds_id=True,
        )
        ds = self._builder.as_dataset(
            split=self._subsplit,
            shuffle_files=shuffle_seed is not None,
            decoders={self._image_key: self._tfds.decode.SkipDecoding()},
            read_config=read_config,
        )
        image_key, label_key = self._image_key, self._label_key
        return ds.map(
            lambda ex: {
                "bytes": ex[image_key],
                "label": tf.cast(ex[label_key], tf.int32),
                "name": ex["tfds_id"],
            }
        )

    def prepare(self) -> None:
        n = self.num_local_examples
        if self._key.cache and self._table is None and n:
            self._table = _materialize(self._read(None), n)

    def records(self, shuffle_seed: tf.Tensor | None) -> tf.data.Dataset:
        if self._table is not None:  # in RAM: an exact permutation per epoch
            return _gather(self._table, _order(self.num_local_examples, shuffle_seed))
        if shuffle_seed is None:
            return self._read(None)
        # Eager here: one int from both seed words, so each epoch gets a new file and buffer order.
        seed = int(tf.random.stateless_uniform([], shuffle_seed, None, None, tf.int64)) % 2**31
        ds = self._read(seed)
        return ds.shuffle(
            max(self._key.shuffle_buffer, 1), seed=seed, reshuffle_each_iteration=False
        )


@functools.lru_cache(maxsize=4)
def decodable(paths: tuple[str, ...], num_workers: int) -> np.ndarray:
    """Which files decode at all (one full decode each): bool per path."""
    ds = tf.data.Dataset.from_tensor_slices(np.asarray(paths, dtype=str))
    ds = ds.map(
        lambda p: {"bytes": tf.io.read_file(p)}, num_parallel_calls=num_parallel(num_workers)
    )
    check = preprocess.guarded(
        lambda r: {"pixels": tf.size(preprocess.decode_full(r["bytes"]))},
        lambda r: {"pixels": tf.constant(0)},
    )
    ds = ds.interleave(
        check,
        cycle_length=num_parallel(num_workers),
        block_length=1,
        num_parallel_calls=num_parallel(num_workers),
        deterministic=True,
    )
    ds = ds.batch(1024).with_options(data_options(num_workers))
    flags = [batch["ok"] for batch in ds.as_numpy_iterator()]
    return np.concatenate(flags) if flags else np.zeros(0, bool)


def _folder_reader(root: str, key: ReaderKey) -> FolderReader:
    names = folder.class_names(root, key.splits)
    listed = folder.list_split(root, key.split, names)
    paths, labels = listed.paths, listed.labels
    if not key.training:
        # Eval counts every image exactly once, so the count must be known before the pass:
        # it is the decodable images. Training needs no scan (bad files are replaced in-batch).
        ok = decodable(tuple(paths.tolist()), key.num_workers)
        if not ok.all():
            bad = paths[~ok]
            logging.warning(
                "input_pipeline: %d of %d files in %s cannot be decoded and are left out of the "
                "eval split (evaluated: %d): %s",
                len(bad),
                len(paths),
                listed.directory,
                int(ok.sum()),
                ", ".join(bad[:_SCAN_LOG_NAMES].tolist())
                + (" ..." if len(bad) > _SCAN_LOG_NAMES else ""),
            )
            paths, labels = paths[ok], labels[ok]
    return FolderReader(paths, labels, key, names)


@functools.lru_cache(maxsize=16)
def open_reader(key: ReaderKey) -> Reader:
    """The (cached) reader for one split of one source on one process."""
    spec = parse_source(key.source)
    if spec.kind == "folder":
        return _folder_reader(key.root, key)
    if spec.kind == "digits":
        return _folder_reader(digits.ensure_tree(key.root), key)
    if spec.kind == "tfds":
        builder = tfds_builder.prepared_builder(spec.name, key.data_dir, key.manual_dir, key.splits)
        return TfdsReader(builder, key)
    raise ValueError(f"source kind {spec.kind!r} has no reader")

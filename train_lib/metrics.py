"""Metric sinks on process 0: metrics.jsonl, TensorBoard (when TensorFlow is importable), and a
tqdm progress bar with loss, lr, img/s and ETA."""

from __future__ import annotations

import json
import os
from typing import Any

import jax
from absl import logging


class MetricWriter:
    def __init__(self, workdir: str, *, tensorboard: bool = True, start_step: int = 0):
        """Appends to <workdir>/metrics.jsonl; rows after `start_step` (written by an earlier run
        past its last checkpoint, and about to be replayed) are dropped, so each step has one row."""
        self.active = jax.process_index() == 0
        self._jsonl = None
        self._tb = None
        if not self.active:
            return
        os.makedirs(workdir, exist_ok=True)
        _truncate_after(os.path.join(workdir, "metrics.jsonl"), start_step)
        self._jsonl = open(os.path.join(workdir, "metrics.jsonl"), "a", buffering=1)
        if tensorboard:
            try:  # tf.summary needs TensorFlow, which the synthetic benchmark path must not import
                from input_pipeline.tf_runtime import tf  # quiet C++ logs, GPUs hidden

                self._tf = tf
                self._tb = tf.summary.create_file_writer(os.path.join(workdir, "tensorboard"))
            except ImportError:
                logging.warning("TensorFlow is not importable: no TensorBoard events are written")

    def write(self, step: int, split: str, values: dict[str, Any]) -> None:
        if not self.active:
            return
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        self._jsonl.write(json.dumps(row) + "\n")
        if self._tb is not None:
            with self._tb.as_default(step=int(step)):
                for key, value in values.items():
                    self._tf.summary.scalar(f"{split}/{key}", float(value))
            self._tb.flush()

    def close(self) -> None:
        if self._jsonl:
            self._jsonl.close()
        if self._tb is not None:
            self._tb.close()


def _step_of(line: str) -> int | None:
    try:
        return int(json.loads(line)["step"])
    except (ValueError, KeyError, TypeError):  # a line cut short by a killed run
        return None


def _truncate_after(path: str, step: int) -> None:
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = [line for line in lines if _step_of(line) is not None and _step_of(line) <= step]
    if len(keep) != len(lines):
        with open(path + ".tmp", "w") as f:
            f.writelines(keep)
        os.replace(path + ".tmp", path)


def progress_bar(total: int, initial: int):
    """A tqdm bar on process 0 (disabled elsewhere); its ETA is the run's ETA."""
    from tqdm import tqdm

    return tqdm(
        total=total,
        initial=initial,
        unit="step",
        dynamic_ncols=True,
        disable=jax.process_index() != 0,
        mininterval=1.0,
    )

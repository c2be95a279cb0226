"""Training callbacks: metrics rows, step-level checkpoints, eval during training, step limit.

MindSpore counts `cur_step_num` from 1 again in every `Model.train` call, so each callback adds
`step_offset` (the steps done before a resume) to get the global step. In dataset sink mode
MindSpore calls back once per sink (an epoch): the periodic actions then fire at the first call
at or after their interval (`due`).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable

import mindspore as ms
import numpy as np
from absl import logging
from mindspore.train.callback import Callback
from ml_collections import ConfigDict

from ascend_port import workdir as wd
from ascend_port.errors import UserError
from train_lib import run_config


def due(step: int, last: int, every: int) -> bool:
    """Whether a multiple of `every` lies in (last, step]."""
    return step // every > last // every


def _loss(outputs) -> float:
    if isinstance(outputs, (tuple, list)):  # (loss, overflow, scale) of loss-scale cells
        outputs = outputs[0]
    return float(np.mean(outputs.asnumpy()))


class MetricsFile:
    """Appends {"step", "split", ...} rows to metrics.jsonl (the JAX side's row format)."""

    def __init__(self, path: str | None):
        self.path = path

    def write(self, step: int, split: str, values: dict) -> None:
        if not self.path:
            return
        row = {"step": int(step), "split": split, **{k: float(v) for k, v in values.items()}}
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")


class _GlobalStep(Callback):
    def __init__(self, step_offset: int):
        super().__init__()
        self.offset = step_offset

    def step(self, run_context) -> int:
        return run_context.original_args().cur_step_num + self.offset


class _Rows(_GlobalStep):
    """A callback that writes metrics rows at intervals: `_last` is the global step of its
    last row (the resume step at first)."""

    def __init__(self, *, total_steps: int, metrics: MetricsFile, step_offset: int):
        super().__init__(step_offset)
        self.total_steps, self.metrics, self._last = total_steps, metrics, step_offset


class Progress(_Rows):
    """Logs loss, lr and images/s every `log_every` steps (the first interval includes graph
    compilation), refuses a non-finite loss, and stops the run after `last_step`."""

    def __init__(
        self,
        *,
        lrs: np.ndarray,
        global_batch: int,
        log_every: int,
        last_step: int,
        total_steps: int,
        metrics: MetricsFile,
        step_offset: int = 0,
    ):
        super().__init__(total_steps=total_steps, metrics=metrics, step_offset=step_offset)
        self.lrs, self.global_batch, self.log_every = lrs, global_batch, log_every
        self.last_step, self._last_time = last_step, time.perf_counter()

    def on_train_begin(self, run_context):
        self._last_time = time.perf_counter()

    def on_train_step_end(self, run_context):
        step = self.step(run_context)
        if due(step, self._last, self.log_every) or step >= self.last_step:
            now = time.perf_counter()
            row = {
                "loss": _loss(run_context.original_args().net_outputs),
                "lr": float(self.lrs[min(step, len(self.lrs)) - 1]),
                "img_per_s": self.global_batch * (step - self._last) / (now - self._last_time),
            }
            if not np.isfinite(row["loss"]):
                raise UserError(
                    f"the loss is {row['loss']} at step {step}; nothing after the last "
                    "checkpoint was saved (lower schedule.lr_max?)"
                )
            self.metrics.write(step, "train", row)
            logging.info(
                "step %d/%d loss %.4f lr %.4g %.1f img/s",
                step,
                self.total_steps,
                row["loss"],
                row["lr"],
                row["img_per_s"],
            )
            self._last, self._last_time = step, now
        if step >= self.last_step:
            run_context.request_stop()


def _non_finite(network) -> list[str]:
    return [
        p.name
        for p in network.get_parameters()
        if p.dtype in (ms.float16, ms.float32, ms.bfloat16)
        and not np.isfinite(p.asnumpy().astype(np.float32)).all()
    ]


class Checkpoints(_GlobalStep):
    """Saves the train network (weights + optimizer state) every `every` steps and at the end,
    atomically, keeping the newest `keep`. Only the writer rank saves (data-parallel weights are
    equal). A network with a non-finite value is never saved: the run stops naming the step."""

    def __init__(
        self,
        *,
        workdir: str,
        model: str,
        every: int,
        keep: int,
        last_step: int,
        meta: dict[str, str],
        config: ConfigDict | None = None,
        enabled: bool = True,
        step_offset: int = 0,
    ):
        super().__init__(step_offset)
        self.workdir, self.model, self.every, self.keep = workdir, model, every, keep
        self.last_step, self.meta, self.enabled, self.config = last_step, meta, enabled, config
        self._saved = step_offset

    def save(self, network, step: int) -> None:
        if not self.enabled or step == self._saved:
            return
        bad = _non_finite(network)
        if bad:
            last = wd.latest_checkpoint(self.workdir)
            raise UserError(
                f"non-finite weights at step {step} ({len(bad)} arrays, e.g. {bad[0]}); not "
                f"saved; last good checkpoint: {last[1] if last else 'none'}"
            )
        path = wd.checkpoint_path(self.workdir, self.model, step)
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        tmp = os.path.join(directory, f".tmp-{os.path.basename(path)}")
        ms.save_checkpoint(network, tmp, append_dict=dict(self.meta, step_num=int(step)))
        if self.config is not None and not wd.checkpoints(self.workdir):
            run_config.store(self.config, directory)  # the config these checkpoints come from
        os.replace(tmp, path)
        self._saved = step
        logging.info("saved %s", path)
        for _, _, old in wd.checkpoints(self.workdir)[: -self.keep]:
            os.remove(old)

    def on_train_step_end(self, run_context):
        step = self.step(run_context)
        if due(step, self._saved, self.every) or step >= self.last_step:
            self.save(run_context.original_args().train_network, step)

    def on_train_end(self, run_context):
        self.save(run_context.original_args().train_network, self.step(run_context))


class PeriodicEval(_Rows):
    """Evaluates every `every` steps and at the last step, writing an "eval" row, and with
    `evaluate_ema` (train.ema_decay) an "eval_ema" row of the averaged weights (the JAX side's
    rows)."""

    def __init__(
        self,
        *,
        evaluate: Callable[[], dict],
        every: int,
        total_steps: int,
        metrics: MetricsFile,
        step_offset: int = 0,
        evaluate_ema: Callable[[], dict] | None = None,
    ):
        super().__init__(total_steps=total_steps, metrics=metrics, step_offset=step_offset)
        self.evaluate, self.every, self.evaluate_ema = evaluate, every, evaluate_ema
        self.result = {}

    def on_train_step_end(self, run_context):
        step = self.step(run_context)
        if due(step, self._last, self.every) or (step >= self.total_steps > self._last):
            self.result = self.evaluate()
            self._last = step
            self.metrics.write(step, "eval", self.result)
            logging.info(
                "step %d eval: top1 %.4f top5 %.4f loss %.4f (%d images)",
                step,
                self.result["top1"],
                self.result["top5"],
                self.result["loss"],
                self.result["examples"],
            )
            if self.evaluate_ema is not None:
                ema = self.evaluate_ema()
                self.metrics.write(step, "eval_ema", ema)
                logging.info("step %d eval of the EMA weights: top1 %.4f", step, ema["top1"])

"""Training callbacks: progress/fps logging to metrics.jsonl, keep-N checkpoints, step limit."""

from __future__ import annotations

import glob
import json
import logging
import os
import re
import time

import mindspore as ms
import numpy as np
from mindspore.train.callback import Callback

log = logging.getLogger("ascend_port.train")


def _loss(outputs) -> float:
    if isinstance(outputs, (tuple, list)):  # (loss, overflow, scale) of loss-scale cells
        outputs = outputs[0]
    return float(np.mean(outputs.asnumpy()))


class Progress(Callback):
    """Logs loss, lr and images/s every `log_every` steps and stops after `total_steps`.

    In dataset sink mode MindSpore reports once per sink (an epoch), so that is the granularity
    there. The first interval includes graph compilation. MindSpore counts steps from 1 again
    after a resume; `step_offset` (steps done before) keeps our count global.
    """

    def __init__(
        self,
        *,
        lrs: np.ndarray,
        global_batch: int,
        log_every: int,
        total_steps: int,
        metrics_path: str | None,
        step_offset: int = 0,
    ):
        super().__init__()
        self.lrs, self.global_batch, self.log_every = lrs, global_batch, max(1, log_every)
        self.total_steps, self.metrics_path, self.offset = total_steps, metrics_path, step_offset
        self._last_step, self._last_time = step_offset, None

    def on_train_begin(self, run_context):
        self._last_time = time.perf_counter()

    def on_train_step_end(self, run_context):
        cb = run_context.original_args()
        step = cb.cur_step_num + self.offset
        if step - self._last_step >= self.log_every or step >= self.total_steps:
            now = time.perf_counter()
            record = {
                "step": step,
                "epoch": cb.cur_epoch_num,
                "loss": _loss(cb.net_outputs),
                "lr": float(self.lrs[min(step, len(self.lrs)) - 1]),
                "images_per_sec": self.global_batch
                * (step - self._last_step)
                / (now - self._last_time),
                "seconds_per_step": (now - self._last_time) / (step - self._last_step),
            }
            self._last_step, self._last_time = step, now
            log.info(
                "step %(step)d epoch %(epoch)d loss %(loss).4f lr %(lr).4g "
                "%(images_per_sec).1f img/s",
                record,
            )
            if self.metrics_path:
                with open(self.metrics_path, "a") as f:
                    f.write(json.dumps(record) + "\n")
        if step >= self.total_steps:
            run_context.request_stop()


_CKPT_RE = re.compile(r"-e(\d+)\.ckpt$")


def checkpoint_files(directory: str) -> list[str]:
    """Our checkpoints in `directory`, oldest first."""
    files = [f for f in glob.glob(os.path.join(directory, "*.ckpt")) if _CKPT_RE.search(f)]
    return sorted(files, key=lambda f: int(_CKPT_RE.search(f).group(1)))


class Checkpoints(Callback):
    """Saves the train network (weights + optimizer state) every `every_epochs` epochs and at the
    end, keeping the newest `keep`. Only the writer rank saves (data-parallel weights are equal)."""

    def __init__(
        self,
        *,
        directory: str,
        prefix: str,
        every_epochs: int,
        keep: int,
        meta: dict[str, str],
        enabled: bool = True,
        step_offset: int = 0,
    ):
        super().__init__()
        self.directory, self.prefix, self.every, self.keep = (
            directory,
            prefix,
            max(1, every_epochs),
            keep,
        )
        self.meta, self.enabled, self.offset, self._saved_epoch = meta, enabled, step_offset, None

    def _save(self, cb) -> None:
        epoch = cb.cur_epoch_num
        if not self.enabled or self._saved_epoch == epoch:
            return
        os.makedirs(self.directory, exist_ok=True)
        path = os.path.join(self.directory, f"{self.prefix}-e{epoch:04d}.ckpt")
        extra = dict(self.meta, epoch_num=int(epoch), step_num=int(cb.cur_step_num + self.offset))
        ms.save_checkpoint(cb.train_network, path, append_dict=extra)
        self._saved_epoch = epoch
        log.info("saved %s", path)
        for old in checkpoint_files(self.directory)[: -self.keep] if self.keep > 0 else []:
            os.remove(old)

    def on_train_epoch_end(self, run_context):
        cb = run_context.original_args()
        if cb.cur_epoch_num % self.every == 0 or run_context.get_stop_requested():
            self._save(cb)

    def on_train_end(self, run_context):
        self._save(run_context.original_args())

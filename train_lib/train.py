"""--mode=train: the training loop, resuming from the latest committed checkpoint of the workdir.

Each step trains; then, when train_lib.periodic says it is time, the loop logs, checkpoints and
evaluates, in that order. The only host sync is at log steps (and inside saves and evals).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterator
from typing import Any

import jax
import numpy as np
import optax
from absl import logging
from ml_collections import ConfigDict

import input_pipeline
import models
from train_lib import build, checkpoint, finetune, finite, optim, periodic, plots, run_config, steps
from train_lib import ema as ema_lib
from train_lib import evaluate as evaluate_lib
from train_lib import loss_scale as loss_scale_lib
from train_lib import mesh as mesh_lib
from train_lib.metrics import MetricWriter, progress_bar
from train_lib.state import SplitModel, TrainState


def run(config: ConfigDict, workdir: str, *, allow_config_change: bool = False) -> dict[str, float]:
    """Trains (resuming from the latest committed checkpoint in workdir) and evaluates.

    Resuming checkpoints trained with a config that differs in a result-changing key is refused
    unless `allow_config_change`."""
    build.validate(config)
    run_config.check_workdir(workdir)
    data_info = build.dataset_info(config)
    ckpt = checkpoint.Checkpointer.for_config(config, workdir)
    try:
        start = ckpt.latest_step()
        if start is not None:  # refused before anything is written or built
            ckpt.check_model(start)
            run_config.check_resume(config, ckpt.directory, allow_change=allow_config_change)
        if jax.process_index() == 0:
            run_config.write(config, workdir)
        job = _Job.create(config, workdir, data_info, ckpt, start)
    except BaseException:
        ckpt.close()  # see Checkpointer.close: exiting on this error must not race orbax's threads
        raise
    writer = MetricWriter(workdir, tensorboard=config.train.tensorboard, start_step=job.start)
    every = {
        a: periodic.every_n_steps(config.train, a, job.steps_per_epoch) for a in periodic.ACTIONS
    }
    last_step = job.num_steps  # of this run; the schedule's last step is job.num_steps
    if config.train.stop_after_steps:
        last_step = min(job.num_steps, job.start + config.train.stop_after_steps)
    state, result = job.state, {}
    bar = progress_bar(job.num_steps, job.start)
    window = _Window()
    config_stored = False
    try:
        for step in range(job.start + 1, last_step + 1):
            state, metrics = job.train_step(state, next(job.batches))
            window.add(metrics)
            if periodic.itstime(step, every["log"], last_step):
                row = window.close(step, job.schedule, config.train.batch_size, state)
                if not np.isfinite(row["loss"]):
                    raise finite.diverged(step, ckpt.committed_step(), ckpt.directory)
                writer.write(step, "train", row)
                bar.set_postfix(
                    loss=f"{row['loss']:.4f}",
                    lr=f"{row['lr']:.3g}",
                    img_s=f"{row['img_per_s']:.0f}",
                )
            bar.update(1)
            if periodic.itstime(step, every["checkpoint"], last_step):
                # The save synchronises anyway; steps that do not save fetch nothing.
                if not finite.all_finite((state.params, state.batch_stats, metrics["loss"])):
                    raise finite.diverged(step, ckpt.committed_step(), ckpt.directory)
                if jax.process_index() == 0 and not config_stored:  # with its first checkpoint
                    run_config.store(config, ckpt.directory)
                    config_stored = True
                ckpt.save(step, state.as_dict())
            if periodic.itstime(step, every["eval"], job.num_steps):
                result = job.evaluate(state, step, writer)
                bar.write(
                    f"step {step}/{job.num_steps} eval: top1 {result['top1']:.4f} "
                    f"top5 {result['top5']:.4f} loss {result['loss']:.4f} "
                    f"({result['examples']} images)"
                )
        if last_step < job.num_steps:
            bar.write(f"stopped after step {last_step} of {job.num_steps}; run again to resume")
        elif job.start >= job.num_steps:  # already trained: evaluate only
            result = job.evaluate(state, job.start, writer=None)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    if jax.process_index() == 0:
        try:  # the run's results are saved; a failed picture must not fail it
            plots.write_curves(workdir)
        except Exception as e:  # noqa: BLE001
            logging.warning("could not draw %s/plots: %r", workdir, e)
    return result


@dataclasses.dataclass
class _Job:
    """Everything the loop runs with, built from the config and the checkpoint to resume."""

    config: ConfigDict
    workdir: str
    data_info: input_pipeline.DatasetInfo
    state: TrainState
    train_step: Callable
    eval_step: Callable
    batches: Iterator
    data_sharding: Any
    schedule: optax.Schedule
    steps_per_epoch: int
    num_steps: int  # the schedule's
    start: int  # the step the state is at

    @classmethod
    def create(
        cls,
        config: ConfigDict,
        workdir: str,
        data_info: input_pipeline.DatasetInfo,
        ckpt: checkpoint.Checkpointer,
        start: int | None,
    ) -> _Job:
        mesh = mesh_lib.make_mesh()
        data_sharding, replicated = mesh_lib.data_sharding(mesh), mesh_lib.replicated(mesh)
        split = SplitModel(build.model(config, fresh_head=True))
        per_epoch = optim.steps_per_epoch(
            config.data.num_train_examples or data_info.num_train_examples, config.train.batch_size
        )
        num_steps = optim.total_steps(config, per_epoch)
        schedule = optim.create_schedule(config, per_epoch, num_steps)
        tx = finetune.create_optimizer(config, schedule, split.initial_params, per_epoch)
        state = build.initial_state(config, tx, split.initial_params, split.initial_stats)
        state = jax.device_put(state, replicated)
        if start is not None:
            state = _resume(ckpt, start, state, replicated)
        start = int(start or 0)
        batches = input_pipeline.train_batches(
            config.data,
            global_batch_size=config.train.batch_size,
            seed=config.seed,
            start_step=start,
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            interpolation=config.data.interpolation or models.info(config.model.name).interpolation,
        )
        return cls(
            config=config,
            workdir=workdir,
            data_info=data_info,
            state=state,
            train_step=build.train_step(config, split, tx, mesh),
            eval_step=build.eval_step(config, split),
            batches=mesh_lib.prefetch_to_device(batches, data_sharding, config.data.prefetch),
            data_sharding=data_sharding,
            schedule=schedule,
            steps_per_epoch=per_epoch,
            num_steps=num_steps,
            start=start,
        )

    def evaluate(self, state: TrainState, step: int, writer: MetricWriter | None) -> dict:
        """Evaluates the weights (and their EMA, in its own 'eval_ema' row) at `step`; writes
        eval_result.json and, with a writer, the metric rows."""
        result = self._one_pass(state.params, state.batch_stats)
        evaluate_lib.report(self.workdir, result, self.data_info.class_names, step=step)
        if writer is None:
            return result
        writer.write(step, "eval", result)
        if state.ema is not None:  # train.ema_decay: the average gets its own row
            ema_result = self._one_pass(state.ema["params"], state.ema["batch_stats"])
            ema_result.pop("confusion", None)  # the report file is the raw weights'
            writer.write(step, "eval_ema", ema_result)
        return result

    def _one_pass(self, params, batch_stats) -> dict[str, Any]:
        return evaluate_lib.one_pass(
            self.config,
            self.eval_step,
            params,
            batch_stats,
            self.data_sharding,
            self.data_info.num_eval_examples,
        )


def _resume(ckpt: checkpoint.Checkpointer, step: int, state: TrainState, replicated) -> TrainState:
    """The state of checkpoint `step`. One saved before train.ema_decay was switched on starts
    the average from its weights; one saved before model.dtype became float16 starts a fresh
    loss scale (and a float16 run's scale is dropped when resumed in another dtype)."""
    restored = TrainState.from_dict(ckpt.restore(step, state.as_dict()))
    logging.warning("resumed from step %d of %s", step, ckpt.directory)
    if state.ema is not None and restored.ema is None:
        ema = ema_lib.init(restored.params, restored.batch_stats)
        restored = restored.replace(ema=jax.device_put(ema, replicated))
        logging.warning(
            "the checkpoint of step %d holds no EMA weights (train.ema_decay was 0); "
            "the average starts from its weights",
            step,
        )
    if state.loss_scale is not None and restored.loss_scale is None:
        restored = restored.replace(loss_scale=jax.device_put(loss_scale_lib.init(), replicated))
        logging.warning(
            "the checkpoint of step %d was not computed in float16; the loss scale starts at %g",
            step,
            loss_scale_lib.INITIAL_SCALE,
        )
    return restored


class _Window:
    """Metric sums of the steps since the last log row, and their wall time."""

    def __init__(self):
        self.sums, self.start, self.steps = None, time.perf_counter(), 0

    def add(self, metrics: dict[str, jax.Array]) -> None:
        self.sums = steps.accumulate(self.sums, metrics)
        self.steps += 1

    def close(
        self, step: int, schedule: optax.Schedule, batch_size: int, state: TrainState
    ) -> dict[str, float]:
        """The log row of the window ending at `step`; starts the next window."""
        sums = mesh_lib.fetch_replicated(self.sums)  # the only host sync of the loop
        elapsed = time.perf_counter() - self.start
        row = {
            "loss": sums["loss"] / sums["count"],
            "top1": sums["top1"] / sums["count"],
            "lr": float(schedule(step - 1)),
            "img_per_s": self.steps * batch_size / elapsed,
        }
        if "skipped" in sums:  # float16: overflowing steps are skipped, the scale halved
            row["skipped_steps"] = sums["skipped"]
            row["loss_scale"] = mesh_lib.fetch_replicated(state.loss_scale["scale"])
        self.sums, self.start, self.steps = None, time.perf_counter(), 0
        return row

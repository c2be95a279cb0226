"""Training with MindSpore from the same config files and flags as main.py.

    python -m ascend_port --config configs/X.py --workdir W \
        --config.data.source=folder:/data/imagenet [--config.train.batch_size=512 ...] \
        [--config.ascend.device_target=CPU] [--config.init_from=w.safetensors] [--distributed]

Batch sizes are global (divided over the data-parallel group); learning rates are scaled by
batch / schedule.reference_batch_size. fp16 with a dynamic (or the seeds' fixed) loss scale on
Ascend/GPU (config.ascend.amp_level, loss_scale, loss_scale_mode); CPU always runs float32. Writes
W/config.json, W/metrics.jsonl (train rows every train.log_every_steps, eval rows every
train.eval_every_epochs and at the end) and W/checkpoints/<model>-s<step>.ckpt (weights +
optimizer state every train.checkpoint_every_steps and at the end, newest
train.keep_checkpoints kept). A run on a workdir with checkpoints resumes from the newest one,
mid-epoch, with the images an uninterrupted run would have read next (ascend_port.sampler).
`python -m ascend_port.train` is the same command. Launch scripts: ascend_port/launch/.
"""

from __future__ import annotations

import math
import re

import mindspore as ms
import mindspore.dataset as msds
import numpy as np
from absl import logging
from mindspore.amp import DynamicLossScaleManager, FixedLossScaleManager
from mindspore.train import Model
from ml_collections import ConfigDict

from ascend_port import (
    callbacks,
    checks,
    ckpt_file,
    data,
    finetune,
    optim,
    registry,
    runtime,
    train_step,
)
from ascend_port import eval as eval_lib
from ascend_port import sampler as sampler_lib
from ascend_port import weights as msw
from ascend_port import workdir as wd
from ascend_port.errors import UserError
from ascend_port.losses import SmoothedCrossEntropy, SoftTargetCrossEntropy
from train_lib import lr_schedule, periodic, plots, run_config
from train_lib.recipes import ema as ema_rule
from train_lib.recipes import mixup as mixup_rule


def _resume(model: Model, workdir: str) -> int:
    """Loads the newest checkpoint into the train network; returns its step (0 if none)."""
    latest = wd.latest_checkpoint(workdir)
    if latest is None:
        return 0
    step, path = latest
    entries = ckpt_file.load_checkpoint(path)
    # The per-step lr arrays (learning_rate, learning_rate_group_N) come from this run's config.
    lr_arrays = [k for k in entries if re.fullmatch(r"learning_rate(_group_\d+)?", k)]
    for key in (*lr_arrays, "step_num", msw.META_MODEL, msw.META_NUM_CLASSES):
        entries.pop(key, None)
    not_loaded, _ = ms.load_param_into_net(model.train_network, entries, strict_load=True)
    not_loaded = [n for n in not_loaded if not re.fullmatch(r"learning_rate(_group_\d+)?", n)]
    if not_loaded:
        raise UserError(
            f"{path} does not fit this run (another optimizer or model?): missing "
            f"{', '.join(not_loaded[:8])}"
        )
    logging.warning("resumed from step %d (%s)", step, path)
    return step


def backbone_lrs(config: ConfigDict, net, lrs: np.ndarray, steps_per_epoch: int):
    """{parameter name: per-step lr} of the backbone (all but the classifier) when fine-tuning
    options ask for its own lr: optim.backbone_lr_scale, and 0 for the first
    train.freeze_backbone_epochs. None when neither is set."""
    scale, freeze = config.optim.backbone_lr_scale, config.train.freeze_backbone_epochs
    if scale == 1.0 and not freeze:
        return None
    backbone = lrs * np.float32(scale)
    backbone[: int(round(freeze * steps_per_epoch))] = 0.0
    head = set(finetune.classifier_keys(net))
    return {p.name: backbone for p in net.trainable_params() if p.name not in head}


def _loss_scale_manager(config: ConfigDict, loss_scale: float):
    """fp16 loss scaling: dynamic (the default; starts at ascend.loss_scale, halves and skips the
    update on overflow, doubles after 2000 finite steps, as the JAX side) or the seeds' fixed
    scale (ascend.loss_scale_mode='fixed', overflowing updates applied)."""
    if config.ascend.loss_scale_mode == "fixed":
        return FixedLossScaleManager(loss_scale, drop_overflow_update=False)
    return DynamicLossScaleManager(loss_scale, scale_factor=2, scale_window=2000)


def _loss(config: ConfigDict):
    """Soft-target CE when the batches are mixed (smoothing is in the targets), else smoothed CE."""
    if mixup_rule.spec(config).enabled:
        return SoftTargetCrossEntropy()
    return SmoothedCrossEntropy(
        config.model.num_classes, config.train.label_smoothing, config.train.label_smoothing_mode
    )


def _build_model(
    config: ConfigDict, net, lrs: np.ndarray, padded_len: int, target: str, steps_per_epoch: int
) -> Model:
    amp_level = "O0" if target == "CPU" else config.ascend.amp_level
    loss_scale = 1.0 if amp_level == "O0" else float(config.ascend.loss_scale)
    # Sink mode runs whole epochs, so the optimizer may index past total_steps: hold the last lr.
    padded = np.pad(lrs, (0, padded_len - len(lrs)), mode="edge")
    lr_of = backbone_lrs(config, net, padded, steps_per_epoch)
    manager = _loss_scale_manager(config, loss_scale) if amp_level != "O0" else None
    # A fixed scale is divided out by the optimizer; the dynamic one by the train cell itself.
    opt_scale = loss_scale if isinstance(manager, FixedLossScaleManager) else 1.0
    optimizer = optim.build(config, net.trainable_params(), padded, opt_scale, lr_of=lr_of)
    t = config.train
    train_network = train_step.build(
        net,
        _loss(config),
        optimizer,
        amp_level=amp_level,
        loss_scale_manager=manager,
        accum_steps=t.accum_steps,
        clip_norm=t.grad_clip_norm or None,
        ema_decays=ema_rule.decays(padded_len, t.ema_decay, t.ema_warmup) if t.ema_decay else None,
    )
    return Model(train_network)


def _ema_evaluator(config: ConfigDict, model: Model, root: str):
    """evaluate() of the EMA weights (train.ema_decay) in a cell of their own; None when off."""
    if not config.train.ema_decay:
        return None
    cell = registry.create(config.model.name, num_classes=config.model.num_classes)

    def evaluate() -> dict:
        msw.assign(cell, train_step.ema_weights(model.train_network), context="EMA weights")
        return eval_lib.run_eval(config, cell, root)

    return evaluate


def train(
    config: ConfigDict,
    workdir: str,
    *,
    distributed: bool = False,
    allow_config_change: bool = False,
) -> dict:
    """Trains (resuming from the newest checkpoint in `workdir`); returns the last eval. A
    resume with a config that differs in a result-changing key from the one stored next to the
    checkpoints is refused unless `allow_config_change` (main.py's rule, train_lib.run_config)."""
    name, num_classes = config.model.name, config.model.num_classes
    wd.check(workdir, name, writing=True)
    run_config.check_resume(config, wd.checkpoint_dir(workdir), allow_change=allow_config_change)
    rank, size = runtime.join_group() if distributed else (0, 1)
    checks.batch_fits(config, size)
    ms.set_seed(config.seed)
    msds.config.set_seed(config.seed)
    net = registry.create(
        name,
        num_classes=num_classes,
        drop_rate=config.model.drop_rate,
        drop_path_rate=config.model.drop_path_rate,
    )
    resuming = wd.latest_checkpoint(workdir) is not None
    if config.init_from and not resuming:
        finetune.load_init(net, config.init_from)
    root = eval_lib.data_root(config)
    per_device = config.train.batch_size // size
    num_images = data.num_train_images(config, root)
    steps_per_epoch = (num_images // size) // per_device
    if steps_per_epoch == 0:
        raise UserError(
            f"{config.data.source}: {num_images} training images are fewer than one batch of "
            f"{config.train.batch_size}"
        )
    total_steps = config.train.steps or config.train.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    lrs = lr_schedule.learning_rates(
        config,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        global_batch=config.train.batch_size,
    )

    net.set_train(True)
    target = config.ascend.device_target
    # A resumed run's passes straddle epochs (ascend_port.sampler): one more epoch of lr covers
    # the last pass in sink mode, which runs whole passes.
    model = _build_model(config, net, lrs, (epochs + 1) * steps_per_epoch, target, steps_per_epoch)
    start = _resume(model, workdir)
    last_step = total_steps
    if config.train.stop_after_steps:
        last_step = min(total_steps, start + config.train.stop_after_steps)

    writer = rank == 0
    if writer:
        wd.write_config(config, workdir)
        wd.drop_metrics_after(workdir, start)
    metrics = callbacks.MetricsFile(wd.metrics_path(workdir) if writer else None)
    if start >= total_steps:
        result = eval_lib.run_eval(config, net, root) if writer else {}
        logging.warning("%s is already trained (%d steps); evaluated only", workdir, start)
        return result

    ds = data.train_dataset(
        config,
        root,
        batch_size=per_device,
        sampler=sampler_lib.ResumableShuffle(
            num_images, seed=config.seed, rank=rank, group_size=size, start=start * per_device
        ),
    )
    cbs = [
        callbacks.Progress(
            lrs=lrs,
            global_batch=config.train.batch_size,
            log_every=periodic.every_n_steps(config.train, "log", steps_per_epoch),
            last_step=last_step,
            total_steps=total_steps,
            metrics=metrics,
            step_offset=start,
        ),
        callbacks.Checkpoints(
            workdir=workdir,
            model=name,
            every=periodic.every_n_steps(config.train, "checkpoint", steps_per_epoch),
            keep=config.train.keep_checkpoints,
            last_step=last_step,
            meta={msw.META_MODEL: name, msw.META_NUM_CLASSES: str(num_classes)},
            config=config,
            enabled=writer,
            step_offset=start,
        ),
    ]
    evaluator = None
    if writer:
        evaluator = callbacks.PeriodicEval(
            evaluate=lambda: eval_lib.run_eval(config, net, root, report_to=workdir),
            evaluate_ema=_ema_evaluator(config, model, root),
            every=periodic.every_n_steps(config.train, "eval", steps_per_epoch),
            total_steps=total_steps,
            metrics=metrics,
            step_offset=start,
        )
        cbs.append(evaluator)
    sink = config.ascend.dataset_sink
    sink = target != "CPU" if sink is None else sink
    logging.info(
        "%s: steps %d..%d of %d (%d per epoch), global batch %d on %d device(s), %s, sink %s",
        name,
        start + 1,
        last_step,
        total_steps,
        steps_per_epoch,
        config.train.batch_size,
        size,
        target,
        sink,
    )
    first = start // steps_per_epoch  # MindSpore's epoch count is for its logs only here
    passes = math.ceil((last_step - start) / steps_per_epoch)
    model.train(first + passes, ds, callbacks=cbs, dataset_sink_mode=sink, initial_epoch=first)
    if last_step < total_steps:
        logging.warning("stopped after step %d of %d; run again to resume", last_step, total_steps)
    if writer:
        try:  # the run's results are saved; a failed picture must not fail it
            plots.write_curves(workdir)
        except Exception as e:  # noqa: BLE001
            logging.warning("could not draw %s/plots: %r", workdir, e)
    return evaluator.result if evaluator else {}


if __name__ == "__main__":  # python -m ascend_port.train: the train mode of python -m ascend_port
    from ascend_port import cli

    cli.run(default_mode="train")

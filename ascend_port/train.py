"""Train a model with MindSpore from the same config files as main.py.

    python -m ascend_port.train --config configs/X.py --data /path/imagenet --output_dir DIR \
        [--config.train.batch_size=512 ...] [--device_target Ascend] [--distributed]

Batch sizes are global (divided over the data-parallel group); learning rates are scaled by
batch / schedule.reference_batch_size. fp16 with a fixed loss scale on Ascend/GPU
(config.ascend.amp_level, config.ascend.loss_scale); CPU always runs float32. Writes
DIR/config.json, DIR/metrics.jsonl and DIR/checkpoints/<model>-eNNNN.ckpt (weights + optimizer
state, every config.ascend.save_every_epochs, newest config.ascend.keep_checkpoints kept) and
resumes from the newest checkpoint there. Launch commands for many devices: docs/ascend.md.
"""

from __future__ import annotations

import logging
import math
import os

import mindspore as ms
import mindspore.dataset as msds
import numpy as np
from absl import app, flags
from mindspore.amp import FixedLossScaleManager
from mindspore.train import Model
from ml_collections import ConfigDict, config_flags

from ascend_port import callbacks, ckpt_file, data, optim, registry, runtime, schedule
from ascend_port import weights as msw
from ascend_port.losses import SmoothedCrossEntropy

log = logging.getLogger("ascend_port.train")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file (configs/*.py)", lock_config=True
)
_DATA = flags.DEFINE_string(
    "data", None, "ImageFolder root (train/, val/), folder:<path> or digits"
)
_OUTPUT = flags.DEFINE_string("output_dir", None, "run directory")
_TARGET = flags.DEFINE_string(
    "device_target", "", "Ascend | GPU | CPU ('' = config.ascend.device_target)"
)
_MODE = flags.DEFINE_enum("mode", "graph", ["graph", "pynative"], "MindSpore execution mode")
_DISTRIBUTED = flags.DEFINE_bool("distributed", False, "data-parallel over the launched processes")
_SINK = flags.DEFINE_bool("sink", None, "dataset sink mode (default: on unless CPU)")


def _check_supported(config: ConfigDict) -> None:
    """Config features this trainer does not implement fail loudly instead of being ignored."""
    unsupported = {
        "train.grad_clip_norm": config.train.grad_clip_norm is not None,
        "data.mixup": bool(config.data.mixup),
        "data.cutmix": bool(config.data.cutmix),
        "data.auto_augment": bool(config.data.auto_augment),
        "data.random_erase": bool(config.data.random_erase),
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise ValueError(f"ascend_port.train does not implement {', '.join(bad)}; unset them")


def _resume(model: Model, directory: str) -> int:
    """Loads the newest checkpoint into the train network; returns the epoch to start from."""
    files = callbacks.checkpoint_files(directory)
    if not files:
        return 0
    entries = ckpt_file.load_checkpoint(files[-1])
    epoch = int(entries.pop("epoch_num").asnumpy())
    entries.pop("learning_rate", None)  # the per-step array comes from this run's config
    not_loaded, _ = ms.load_param_into_net(model.train_network, entries, strict_load=True)
    not_loaded = [n for n in not_loaded if n != "learning_rate"]
    if not_loaded:
        raise RuntimeError(f"{files[-1]} does not fit this run: missing {not_loaded[:8]}")
    log.info("resumed from %s (epoch %d)", files[-1], epoch)
    return epoch


def train(
    config: ConfigDict,
    data_arg: str,
    output_dir: str,
    *,
    target: str,
    mode: str,
    distributed: bool,
    sink: bool | None,
) -> str:
    """Runs the training; returns the checkpoint directory."""
    _check_supported(config)
    rank, size = runtime.setup(target, mode, distributed)
    ms.set_seed(config.seed)
    msds.config.set_seed(config.seed)
    if config.train.batch_size % size:
        raise ValueError(
            f"train.batch_size {config.train.batch_size} is not divisible by {size} devices"
        )
    root = data.resolve_root(data_arg)
    ds = data.train_dataset(
        config, root, batch_size=config.train.batch_size // size, rank=rank, group_size=size
    )
    steps_per_epoch = ds.get_dataset_size()
    if steps_per_epoch == 0:
        raise ValueError(f"{root}: fewer training images per device than one batch")
    total_steps = config.train.steps or config.train.epochs * steps_per_epoch
    epochs = math.ceil(total_steps / steps_per_epoch)
    lrs = schedule.learning_rates(
        config,
        steps_per_epoch=steps_per_epoch,
        total_steps=total_steps,
        global_batch=config.train.batch_size,
    )

    name, num_classes = config.model.name, config.model.num_classes
    net = registry.create(
        name,
        num_classes=num_classes,
        drop_rate=config.model.drop_rate,
        drop_path_rate=config.model.drop_path_rate,
    )
    if config.init_from:
        msw.load_weights(net, config.init_from)
    net.set_train(True)
    amp_level = "O0" if target == "CPU" else config.ascend.amp_level
    loss_scale = 1.0 if amp_level == "O0" else float(config.ascend.loss_scale)
    # Sink mode runs whole epochs, so the optimizer may index past total_steps: hold the last lr.
    padded = np.pad(lrs, (0, epochs * steps_per_epoch - total_steps), mode="edge")
    optimizer = optim.build(config, net.trainable_params(), padded, loss_scale)
    kwargs = {}
    if amp_level != "O0":
        kwargs["loss_scale_manager"] = FixedLossScaleManager(loss_scale, drop_overflow_update=False)
    model = Model(
        net,
        loss_fn=SmoothedCrossEntropy(num_classes, config.train.label_smoothing),
        optimizer=optimizer,
        amp_level=amp_level,
        **kwargs,
    )

    ckpt_dir = os.path.join(output_dir, "checkpoints")
    initial_epoch = _resume(model, ckpt_dir)
    done = initial_epoch * steps_per_epoch
    writer = rank == 0
    if writer:
        os.makedirs(output_dir, exist_ok=True)
        with open(os.path.join(output_dir, "config.json"), "w") as f:
            f.write(config.to_json_best_effort(indent=2))
    cbs = [
        callbacks.Progress(
            lrs=lrs,
            global_batch=config.train.batch_size,
            log_every=config.train.log_every_steps,
            total_steps=total_steps,
            metrics_path=os.path.join(output_dir, "metrics.jsonl") if writer else None,
            step_offset=done,
        ),
        callbacks.Checkpoints(
            directory=ckpt_dir,
            prefix=name,
            every_epochs=config.ascend.save_every_epochs,
            keep=config.ascend.keep_checkpoints,
            enabled=writer,
            meta={msw.META_MODEL: name, msw.META_NUM_CLASSES: str(num_classes)},
            step_offset=done,
        ),
    ]
    log.info(
        "%s: %d steps (%d epochs of %d), global batch %d on %d device(s), %s, amp %s",
        name,
        total_steps,
        epochs,
        steps_per_epoch,
        config.train.batch_size,
        size,
        target,
        amp_level,
    )
    sink = target != "CPU" if sink is None else sink
    model.train(epochs, ds, callbacks=cbs, dataset_sink_mode=sink, initial_epoch=initial_epoch)
    return ckpt_dir


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    train(
        config,
        _DATA.value,
        _OUTPUT.value,
        target=runtime.device_target(_TARGET.value, config),
        mode=_MODE.value,
        distributed=_DISTRIBUTED.value,
        sink=_SINK.value,
    )


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "data", "output_dir"])
    app.run(main)

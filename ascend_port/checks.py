"""Config values the MindSpore side refuses before anything runs (one function, one place).

Types and unknown keys are refused by the locked ConfigDict while the flags are parsed; these are
the value checks. Imports no mindspore, so the checks cost nothing before the framework loads.
"""

from __future__ import annotations

import math

from ml_collections import ConfigDict

from ascend_port import registry
from ascend_port.errors import UserError
from input_pipeline import augment_rules
from train_lib import lr_schedule

TARGETS = ("Ascend", "GPU", "CPU")
EXEC_MODES = ("graph", "pynative")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
EXPORT_FORMATS = ("MINDIR", "ONNX")
OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = lr_schedule.SCHEDULES
INTERPOLATIONS = ("bilinear", "bicubic")
# Families whose cells take a stochastic-depth rate (the others have no drop path).
_DROP_PATH_FAMILIES = ("hlg", "hlg_zoo")
# Families whose architecture only fits 224x224 inputs (models/hlg_arch.py says why).
_FIXED_224_FAMILIES = ("hlg", "hlg_zoo")


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value!r}; choose one of {', '.join(map(str, choices))}")


def _positive(key: str, value, *, allow_none: bool = False, allow_zero: bool = False) -> None:
    if value is None and allow_none:
        return
    if value is None or not math.isfinite(value) or value < 0 or (value == 0 and not allow_zero):
        raise UserError(f"{key}={value}; must be {'>= 0' if allow_zero else '> 0'}")


def _rate(key: str, value) -> None:
    if value is not None and not 0.0 <= value < 1.0:
        raise UserError(f"{key}={value}; must be in [0, 1)")


def data_source(source: str) -> None:
    """The sources the MindSpore side reads: digits and folder:<path> (ImageFolder trees)."""
    if source == "digits" or (source.startswith("folder:") and len(source) > len("folder:")):
        return
    if source.startswith("tfds:") or source == "synthetic":
        raise UserError(
            f"data.source={source!r}: the MindSpore side reads ImageFolder trees "
            "(folder:<path> with train/<class>/ and val/<class>/) and digits only"
        )
    raise UserError(
        f"data.source={source!r} is not a source; use folder:<path>, digits "
        "(or, on the JAX side, tfds:<name> and synthetic)"
    )


def validate(config: ConfigDict, *, mode: str = "train") -> None:
    """Raises UserError naming the first config value this side cannot run with."""
    m, d, t, o, s, a = (
        config.model,
        config.data,
        config.train,
        config.optim,
        config.schedule,
        config.ascend,
    )
    try:
        info = registry.info(m.name)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    _positive("model.num_classes", m.num_classes)
    _rate("model.drop_rate", m.drop_rate)
    _rate("model.drop_path_rate", m.drop_path_rate)
    if m.drop_path_rate is not None and info.family not in _DROP_PATH_FAMILIES:
        raise UserError(f"model.drop_path_rate: {m.name} has no stochastic depth; leave it unset")
    if mode != "predict":  # predict reads no dataset (ImageNet's class names ship with us)
        data_source(d.source)
    _positive("data.image_size", d.image_size)
    if info.family in _FIXED_224_FAMILIES and d.image_size != 224:
        raise UserError(f"data.image_size={d.image_size}: {m.name} takes 224x224 inputs only")
    if d.crop_pct is not None and not 0.0 < d.crop_pct <= 1.0:
        raise UserError(f"data.crop_pct={d.crop_pct}; must be in (0, 1]")
    if d.interpolation is not None:
        _choice("data.interpolation", d.interpolation, INTERPOLATIONS)
    try:  # crop/ratio bounds and the augmentation fields, one rule for both sides
        augment_rules.check(d)
    except ValueError as e:
        raise UserError(str(e)) from None
    _positive("train.batch_size", t.batch_size)
    _positive("train.eval_batch_size", t.eval_batch_size, allow_none=True)
    _choice("ascend.device_target", a.device_target, TARGETS)
    _choice("ascend.mode", a.mode, EXEC_MODES)
    if mode == "export":
        _choice("ascend.export_format", a.export_format, EXPORT_FORMATS)
        _positive("ascend.export_batch_size", a.export_batch_size)
    if mode != "train":
        return
    _positive("train.epochs", t.epochs)
    _positive("train.steps", t.steps, allow_none=True)
    _positive("train.stop_after_steps", t.stop_after_steps, allow_none=True)
    _positive("train.log_every_steps", t.log_every_steps)
    _positive("train.checkpoint_every_steps", t.checkpoint_every_steps)
    _positive("train.eval_every_epochs", t.eval_every_epochs)
    _positive("train.keep_checkpoints", t.keep_checkpoints)
    _positive("train.freeze_backbone_epochs", t.freeze_backbone_epochs, allow_zero=True)
    if not 0.0 <= t.label_smoothing < 1.0:
        raise UserError(f"train.label_smoothing={t.label_smoothing}; must be in [0, 1)")
    _choice("optim.name", o.name, OPTIMIZERS)
    _positive("optim.weight_decay", o.weight_decay, allow_zero=True)
    _positive("optim.backbone_lr_scale", o.backbone_lr_scale, allow_zero=True)
    _choice("schedule.name", s.name, SCHEDULES)
    _positive("schedule.lr_max", s.lr_max)
    _positive("schedule.reference_batch_size", s.reference_batch_size)
    _positive("schedule.warmup_epochs", s.warmup_epochs, allow_zero=True)
    _choice("ascend.amp_level", a.amp_level, AMP_LEVELS)
    _positive("ascend.loss_scale", a.loss_scale)
    unsupported = {
        "train.grad_clip_norm": t.grad_clip_norm is not None,
        "train.ema_decay": bool(t.ema_decay),
        "train.accum_steps": t.accum_steps != 1,
    }
    bad = [k for k, v in unsupported.items() if v]
    if bad:
        raise UserError(f"the MindSpore trainer does not implement {', '.join(bad)}; unset them")


def batch_fits(config: ConfigDict, devices: int) -> None:
    """Global batch sizes must split evenly over the data-parallel group."""
    if config.train.batch_size % devices:
        raise UserError(
            f"train.batch_size={config.train.batch_size} is not divisible by the {devices} devices"
        )

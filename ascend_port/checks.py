"""Config values the MindSpore side refuses before anything runs.

Types and unknown keys are refused by the locked ConfigDict while the flags are parsed; these are
the value checks: train_lib.config_checks (framework-free, main.py's too) and then the MindSpore
side's own. Imports no mindspore, so the checks cost nothing before the framework loads.
"""

from __future__ import annotations

import math

from ml_collections import ConfigDict

from ascend_port.errors import UserError
from train_lib import config_checks

TARGETS = ("Ascend", "GPU", "CPU")
EXEC_MODES = ("graph", "pynative")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
EXPORT_FORMATS = ("MINDIR", "ONNX")


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
    """Raises UserError naming the first config value this side cannot run with: first the
    checks both sides share (train_lib.config_checks, so main.py and this CLI refuse the same
    configs with the same line), then what only the MindSpore side needs."""
    config_checks.check(config, device_count=1, process_count=1, init_from=False)
    d, t, o, s, a = config.data, config.train, config.optim, config.schedule, config.ascend
    if mode != "predict":  # predict reads no dataset (ImageNet's class names ship with us)
        data_source(d.source)
    _choice("ascend.device_target", a.device_target, TARGETS)
    _choice("ascend.mode", a.mode, EXEC_MODES)
    if mode == "export":
        _choice("ascend.export_format", a.export_format, EXPORT_FORMATS)
        _positive("ascend.export_batch_size", a.export_batch_size)
    if mode != "train":
        return
    _positive("train.freeze_backbone_epochs", t.freeze_backbone_epochs, allow_zero=True)
    if not 0.0 <= t.label_smoothing < 1.0:
        raise UserError(f"train.label_smoothing={t.label_smoothing}; must be in [0, 1)")
    _positive("optim.weight_decay", o.weight_decay, allow_zero=True)
    _positive("optim.backbone_lr_scale", o.backbone_lr_scale, allow_zero=True)
    _positive("schedule.lr_max", s.lr_max)
    _positive("schedule.warmup_epochs", s.warmup_epochs, allow_zero=True)
    _choice("ascend.amp_level", a.amp_level, AMP_LEVELS)
    _positive("ascend.loss_scale", a.loss_scale)


def batch_fits(config: ConfigDict, devices: int) -> None:
    """Global batch sizes must split evenly over the data-parallel group."""
    if config.train.batch_size % devices:
        raise UserError(
            f"train.batch_size={config.train.batch_size} is not divisible by the {devices} devices"
        )

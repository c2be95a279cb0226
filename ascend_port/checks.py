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
from train_lib.recipes import checks as recipe_checks

TARGETS = ("Ascend", "GPU", "CPU")
EXEC_MODES = ("graph", "pynative")
AMP_LEVELS = ("O0", "O1", "O2", "O3")
EXPORT_FORMATS = ("MINDIR", "ONNX")


def _choice(key: str, value, choices) -> None:
    if value not in choices:
        raise UserError(f"{key}={value!r}; choose one of {', '.join(map(str, choices))}")


def _positive(key: str, value) -> None:
    if value is None or not math.isfinite(value) or value <= 0:
        raise UserError(f"{key}={value}; must be > 0")


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
    configs with the same line), then what only the MindSpore side has: the sources it reads
    and the ascend.* fields."""
    config_checks.check(config, device_count=1, process_count=1, init_from=False)
    d, a = config.data, config.ascend
    if mode != "predict":  # predict reads no dataset (ImageNet's class names ship with us)
        data_source(d.source)
    _choice("ascend.device_target", a.device_target, TARGETS)
    _choice("ascend.mode", a.mode, EXEC_MODES)
    if mode == "export":
        _choice("ascend.export_format", a.export_format, EXPORT_FORMATS)
        _positive("ascend.export_batch_size", a.export_batch_size)
    if mode != "train":
        return
    _choice("ascend.amp_level", a.amp_level, AMP_LEVELS)
    _positive("ascend.loss_scale", a.loss_scale)


def batch_fits(config: ConfigDict, devices: int) -> None:
    """Once the data-parallel group is known: the global batch splits over its devices, each
    share into train.accum_steps micro-batches, and mixing works on each device's batch (the
    MindSpore side mixes per device, in its pipeline): the shared recipe rule."""
    per_device = config.train.batch_size // devices
    if problem := recipe_checks.first_error(config, mixing_batch=per_device, devices=devices):
        raise UserError(problem)

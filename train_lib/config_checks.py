"""Value checks of a config that need no framework: both main.py and the MindSpore CLIs call
`check` before anything runs, so a mistake is one clear line before the first step, on either side.

Imports only the framework-free architecture tables (numpy) and the data.source parser, so the
MindSpore environment (no jax, no TensorFlow) can import it. Device and process counts come in as
ints: each side counts its own.
"""

from __future__ import annotations

import dataclasses
import functools
import os

from ml_collections import ConfigDict

from input_pipeline import augment_rules
from input_pipeline.sources import parse_source
from train_lib import periodic
from train_lib.errors import UserError
from train_lib.recipes import checks as recipe_checks

DTYPES = ("float32", "bfloat16", "float16")
PARALLEL_MODES = ("jit", "pmap")
OPTIMIZERS = ("sgd", "rmsprop", "adamw")
SCHEDULES = ("cosine", "linear", "step", "zoo_cosine")
INTERPOLATIONS = ("bilinear", "bicubic")


@dataclasses.dataclass(frozen=True)
class Capabilities:
    """What a variant accepts from the config, known without building it."""

    family: str
    options: frozenset[str]  # model.* rates the builder takes (drop_rate, drop_path_rate)
    fixed_input_size: int | None  # the only image size it runs at (None: any)


# The model.* rates each family's builder takes (the variant table does not list options).
_FAMILY_OPTIONS = {
    "hardnet": frozenset({"drop_rate"}),
    "hrnet": frozenset({"drop_rate"}),
    "hlg": frozenset({"drop_path_rate"}),
    "hlg_zoo": frozenset({"drop_path_rate"}),
}


@functools.cache
def _capabilities() -> dict[str, Capabilities]:
    """Every registered variant, from the framework-free variant table both sides read."""
    from models import variants

    return {
        name: Capabilities(
            v.family,
            _FAMILY_OPTIONS[v.family],
            v.input_size if v.input_sizes == "fixed" else None,
        )
        for name, v in ((n, variants.get(n)) for n in variants.names())
    }


def model_names() -> list[str]:
    return sorted(_capabilities())


def capabilities(name: str) -> Capabilities:
    """The capabilities of variant `name`; UserError naming the choices when it is not one."""
    table = _capabilities()
    if name not in table:
        raise UserError(
            f"model.name={name!r} is not a model; choose one of {', '.join(sorted(table))}"
        )
    return table[name]


def _choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserError(f"{key}={value!r}; choose one of {', '.join(choices)}")


def _positive(key: str, value: float | int | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if value is None or value <= 0:
        raise UserError(f"{key}={value} must be positive")


def _batch(key: str, value: int, devices: int, processes: int, mode: str) -> None:
    if value <= 0:
        raise UserError(f"{key}={value} must be positive")
    if value % processes:
        raise UserError(f"{key}={value} is not divisible by the {processes} processes")
    if value % devices:
        raise UserError(
            f"{key}={value} is not divisible by the {devices} devices (parallel.mode={mode}); "
            f"use a multiple of {devices}"
        )


def check_model(config: ConfigDict) -> Capabilities:
    """model.*: the name, dtype, class count and the rates and image size the variant accepts."""
    model = config.model
    caps = capabilities(model.name)
    _choice("model.dtype", model.dtype, DTYPES)
    _positive("model.num_classes", model.num_classes)
    for key in ("drop_rate", "drop_path_rate"):
        value = model.get(key)
        if value is None:
            continue
        if key not in caps.options:
            has = " or ".join(f"model.{k}" for k in sorted(caps.options)) or "no rate"
            raise UserError(
                f"model.{key}={value}: {model.name} ({caps.family}) has no {key}; it takes {has}"
            )
        if not 0.0 <= value < 1.0:
            raise UserError(f"model.{key}={value} must be in [0, 1)")
    size = config.data.image_size
    _positive("data.image_size", size)
    if caps.fixed_input_size is not None and size != caps.fixed_input_size:
        raise UserError(
            f"data.image_size={size}: {model.name} only runs at {caps.fixed_input_size}x"
            f"{caps.fixed_input_size} (its position biases are built for that size); set "
            f"--config.data.image_size={caps.fixed_input_size}"
        )
    return caps


def check_data(config: ConfigDict) -> None:
    """data.*: the source string, crop/interpolation values and the augmentations built so far."""
    data = config.data
    try:
        parse_source(data.source)
    except ValueError as e:
        raise UserError(f"{e} (e.g. tfds:imagenet2012, folder:/data/imagenet)") from None
    if data.crop_pct is not None and not 0.0 < data.crop_pct <= 1.0:
        raise UserError(f"data.crop_pct={data.crop_pct} must be in (0, 1]")
    if data.interpolation is not None:
        _choice("data.interpolation", data.interpolation, INTERPOLATIONS)
    try:
        augment_rules.check(data)
    except ValueError as e:
        raise UserError(str(e)) from None


def check_train(config: ConfigDict, *, device_count: int, process_count: int) -> None:
    """train.*, optim.*, schedule.*, parallel.*: values, and global batch sizes against the
    devices and processes (each process feeds an equal slice, each device an equal shard)."""
    train = config.train
    mode = config.parallel.mode
    _choice("parallel.mode", mode, PARALLEL_MODES)
    _batch("train.batch_size", train.batch_size, device_count, process_count, mode)
    if train.eval_batch_size is not None:
        _batch("train.eval_batch_size", train.eval_batch_size, device_count, process_count, mode)
    _positive("train.epochs", train.epochs)
    _positive("train.steps", train.steps, optional=True)
    _positive("train.stop_after_steps", train.stop_after_steps, optional=True)
    _positive("train.keep_checkpoints", train.keep_checkpoints)
    periodic.check(train)  # log / eval / checkpoint periods in steps or epochs
    if "label_smoothing_mode" in train:
        _choice("train.label_smoothing_mode", train.label_smoothing_mode, ("uniform", "others"))
    _choice("optim.name", config.optim.name, OPTIMIZERS)
    _choice("schedule.name", config.schedule.name, SCHEDULES)
    _positive("schedule.reference_batch_size", config.schedule.reference_batch_size)
    _positive("schedule.lr_max", config.schedule.lr_max)
    if not 0.0 <= train.label_smoothing < 1.0:  # NaN fails too
        raise UserError(f"train.label_smoothing={train.label_smoothing} must be in [0, 1)")
    for key in (
        "optim.weight_decay",
        "schedule.warmup_epochs",
        "optim.backbone_lr_scale",  # fine-tuning
        "train.freeze_backbone_epochs",
    ):
        group, name = key.split(".")
        if not config[group][name] >= 0:  # NaN fails too
            raise UserError(f"{key}={config[group][name]} must not be negative")


def check_init_from(config: ConfigDict) -> None:
    """init_from must be a complete canonical safetensors file; a PyTorch checkpoint gets the
    command that converts it."""
    path = config.init_from
    if not path:
        return
    from models import file_kind

    if not os.path.isfile(path):
        raise UserError(f"init_from={path}: no such file")
    kind = file_kind.kind(path)
    if kind == file_kind.PYTORCH:
        out = os.path.splitext(path)[0] + ".safetensors"
        raise UserError(
            f"init_from={path} is {file_kind.describe(path)}, not canonical safetensors; convert "
            f"it first: python -m models.torch_import {config.model.name} {path} {out} "
            f"(then --config.init_from={out})"
        )
    if kind != file_kind.SAFETENSORS:
        raise UserError(
            f"init_from={path} is {file_kind.describe(path)}; pass a .safetensors "
            "file written by main.py --mode=export or python -m models.torch_import"
        )
    holds = file_kind.safetensors_metadata(path).get("model")
    if holds not in (None, config.model.name):
        raise UserError(
            f"init_from={path} holds {holds} weights, not model.name={config.model.name}"
        )


def check(
    config: ConfigDict, *, device_count: int, process_count: int = 1, init_from: bool = True
) -> Capabilities:
    """Every value check that needs no framework; raises UserError (one line) on the first problem.

    `init_from=False` leaves config.init_from to the caller (the MindSpore side also reads .ckpt)."""
    caps = check_model(config)
    if init_from:
        check_init_from(config)
    check_data(config)
    check_train(config, device_count=device_count, process_count=process_count)
    # Recipe fields (mixup/cutmix, EMA, accumulation, loss scale): train_lib/recipes/checks.py.
    pmap = config.parallel.mode == "pmap"
    mixing_batch = config.train.batch_size // (device_count if pmap else 1)
    if problem := recipe_checks.first_error(
        config, mixing_batch=mixing_batch, devices=device_count
    ):
        raise UserError(problem)
    return caps

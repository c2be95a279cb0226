"""Value checks of the recipe fields (mixup/cutmix, EMA, accumulation, loss scale), shared by
main.py and ascend_port.train so that both refuse the same configs with the same sentence."""

from __future__ import annotations

from ml_collections import ConfigDict

from train_lib.recipes import mixup

LOSS_SCALE_MODES = ("dynamic", "fixed")


def first_error(config: ConfigDict, *, mixing_batch: int, devices: int = 1) -> str | None:
    """The first user mistake in the recipe fields, or None. `mixing_batch` is the batch that is
    mixed as one (the global batch in jit mode, the per-device batch otherwise)."""
    k, batch = config.train.accum_steps, config.train.batch_size
    if k < 1:
        return f"train.accum_steps={k}; it must be >= 1"
    if batch % (k * devices):
        return (
            f"train.batch_size={batch} does not split into train.accum_steps={k} "
            f"micro-batches over {devices} device(s)"
        )
    if config.ascend.loss_scale_mode not in LOSS_SCALE_MODES:
        return (
            f"ascend.loss_scale_mode={config.ascend.loss_scale_mode!r}; choose one of "
            f"{', '.join(LOSS_SCALE_MODES)}"
        )
    if not 0.0 <= config.train.ema_decay < 1.0:
        return f"train.ema_decay={config.train.ema_decay}; it must be in [0, 1) (0 = off)"
    clip = config.train.grad_clip_norm
    if clip is not None and not clip >= 0.0:  # NaN fails too
        return f"train.grad_clip_norm={clip}; it must be > 0 (unset or 0 = no clipping)"
    return mixup.check(config, mixing_batch)


def class_count(
    model_classes: int, data_classes: int, source: str
) -> tuple[str | None, str | None]:
    """(error, note) for a model with `model_classes` logits on a dataset of `data_classes`.

    More logits than classes is accepted (the MindSpore zoo trains hlg_mobile with 1001 logits on
    1000-class ImageNet; the extra logits are never targets): that gets a note to log. Fewer is
    an error: some labels would have no logit.
    """
    if model_classes < data_classes:
        return (
            f"{source} has {data_classes} classes but model.num_classes={model_classes}; "
            "it must be at least that"
        ), None
    if model_classes > data_classes:
        return None, (
            f"model.num_classes={model_classes} > the {data_classes} classes of "
            f"{source}: logits {data_classes}..{model_classes - 1} are never targets"
        )
    return None, None

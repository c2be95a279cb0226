"""Fine-tuning: start from weights of another class count, and give the backbone its own lr.

Loading: when only the classifier's shapes differ from the file (another class count), every
other weight is loaded, the classifier keeps its fresh random init, and one log line names the
skipped keys. A classifier whose shape matches is loaded as usual.

Optimizer: with optim.backbone_lr_scale != 1 or train.freeze_backbone_epochs > 0, the params
are split into two optax.multi_transform groups, each the configured optimizer with its own
schedule: the head follows the schedule, the backbone follows it times backbone_lr_scale and is
0 for the first round(freeze_backbone_epochs * steps_per_epoch) steps. An lr of 0 is an update
of exactly 0 for every optimizer here (weight decay included), as a per-group lr is on the
MindSpore side. Freezing stops the backbone's params only: its BatchNorm layers stay in train
mode and their running statistics follow the new data (timm's default; the head then learns
on features normalised with the statistics it is evaluated with). Gradient clipping stays
global over both groups.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np
import optax
from absl import logging
from flax import nnx
from ml_collections import ConfigDict

from models import registry
from models import weights as weights_lib
from models.classifier import classifier_keys
from train_lib import optim
from train_lib.errors import UserError


def split_head(
    config: ConfigDict, flat: dict[str, np.ndarray] | None, **model_kwargs
) -> tuple[dict[str, np.ndarray] | None, list[str]]:
    """(weights, skipped keys). When only the file's classifier misfits the configured model,
    returns the file without it and the classifier's keys; otherwise (flat, [])."""
    if flat is None:
        return None, []
    abstract = registry.abstract(
        config.model.name, num_classes=config.model.num_classes, **model_kwargs
    )
    shapes = weights_lib.shapes(abstract)
    head = classifier_keys(shapes, config.model.num_classes)
    if not head or not set(head) <= set(flat):
        return flat, []
    if all(tuple(np.shape(flat[k])) == tuple(shapes[k]) for k in head):
        return flat, []
    body = {k: v for k, v in flat.items() if k not in head}
    try:
        weights_lib.check_compatible({k: s for k, s in shapes.items() if k not in head}, body)
    except weights_lib.WeightsMismatchError:
        return flat, []  # more than the classifier differs: the strict load names it all
    logging.warning(
        "%s: loaded every weight but the classifier (%s: %s in the file, %s here), which "
        "starts fresh",
        config.init_from,
        ", ".join(head),
        tuple(np.shape(flat[head[0]])),
        tuple(shapes[head[0]]),
    )
    return body, head


def load_body(model: nnx.Module, body: dict[str, np.ndarray]) -> nnx.Module:
    """Writes every weight of `body` into `model`; the leaves it lacks keep their init."""
    return weights_lib.load(model, {**weights_lib.flatten(model), **body})


def head_labels(params: dict[str, jnp.ndarray], num_classes: int) -> dict[str, str]:
    """'head' for the classifier's params, 'backbone' for every other."""
    head = set(classifier_keys({k: v.shape for k, v in params.items()}, num_classes))
    return {k: "head" if k in head else "backbone" for k in params}


def create_optimizer(
    config: ConfigDict,
    schedule: optax.Schedule,
    params: dict[str, jnp.ndarray],
    steps_per_epoch: int,
) -> optax.GradientTransformation:
    """optim.create_optimizer, with the backbone's own lr when the fine-tuning options ask."""
    scale = float(config.optim.backbone_lr_scale)
    frozen = int(round(config.train.freeze_backbone_epochs * steps_per_epoch))
    if scale == 1.0 and not frozen:
        return optim.create_optimizer(config, schedule)
    labels = head_labels(params, config.model.num_classes)
    if "head" not in labels.values():
        raise UserError(f"{config.model.name} has no classifier with model.num_classes outputs")

    def backbone(count):
        return jnp.where(count < frozen, 0.0, schedule(count) * scale)

    inner = config.copy_and_resolve_references()
    inner.train.grad_clip_norm = None  # clipped once, over both groups, below
    tx = optax.multi_transform(
        {
            "head": optim.create_optimizer(inner, schedule),
            "backbone": optim.create_optimizer(inner, backbone),
        },
        labels,
    )
    if config.train.grad_clip_norm:
        tx = optax.chain(optim.clip_by_global_norm(config.train.grad_clip_norm), tx)
    return tx

"""Pure train and eval steps, in jit mode (global batch, synced BatchNorm) and pmap mode
(per-device program via shard_map: per-device BatchNorm, pmean of gradients and statistics)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from train_lib import erasing
from train_lib.mesh import DATA_AXIS
from train_lib.state import SplitModel, TrainState


def normalize(images: jax.Array, mean, std, dtype) -> jax.Array:
    """uint8 NHWC -> normalised compute dtype, on device."""
    x = images.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x.astype(dtype)


def cross_entropy(logits: jax.Array, labels: jax.Array, smoothing: float,
                  mode: str = "uniform") -> jax.Array:
    """Per-example softmax CE in float32 with label smoothing: 'uniform' spreads a over all K
    classes (optax, timm), 'others' puts a / (K - 1) on every other class (MindSpore zoo)."""
    logits = logits.astype(jnp.float32)
    if not smoothing:
        return optax.softmax_cross_entropy_with_integer_labels(logits, labels)
    num_classes = logits.shape[-1]
    one_hot = jax.nn.one_hot(labels, num_classes)
    if mode == "others":
        targets = one_hot * (1.0 - smoothing) + (1.0 - one_hot) * (smoothing / (num_classes - 1))
    else:
        targets = optax.smooth_labels(one_hot, smoothing)
    return optax.softmax_cross_entropy(logits, targets)


def _topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    k = min(k, logits.shape[-1])
    return jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)


def make_train_step(split: SplitModel, tx: optax.GradientTransformation, *, mean, std, dtype,
                    label_smoothing: float, mesh: Mesh, mode: str = "jit",
                    label_smoothing_mode: str = "uniform"):
    """Returns step(state, batch) -> (state, metric sums); state is donated."""
    per_device = mode == "pmap"

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if per_device:  # each device drops different units
            rng = jax.random.fold_in(rng, jax.lax.axis_index(DATA_AXIS))
        images = normalize(batch["image"], mean, std, dtype)
        if "erase" in batch:  # data.random_erase: rectangles drawn on the host, filled here
            images = erasing.apply(images, batch["erase"], rng)
        labels = batch["label"]

        def loss_fn(params):
            logits, stats = split.apply(params, state.batch_stats, images, train=True, rng=rng)
            loss = cross_entropy(logits, labels, label_smoothing, label_smoothing_mode).mean()
            return loss, (logits, stats)

        (loss, (logits, stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        metrics = {
            "loss": loss * labels.shape[0],
            "top1": _topk_correct(logits, labels, 1).sum(),
            "count": jnp.asarray(labels.shape[0], jnp.float32),
        }
        if per_device:
            grads = jax.lax.pmean(grads, DATA_AXIS)
            # The running-average update is linear, so averaging the per-device statistics each
            # step equals averaging them before evaluation; the state stays replicated.
            stats = jax.lax.pmean(stats, DATA_AXIS)
            metrics = jax.lax.psum(metrics, DATA_AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, batch_stats=stats,
                                  opt_state=opt_state)
        return new_state, metrics

    if per_device:
        step = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()))
    return jax.jit(step, donate_argnums=0)


def make_eval_step(split: SplitModel, *, mean, std, dtype):
    """Returns eval(params, batch_stats, batch) -> masked sums (loss, top1, top5, count) and the
    confusion matrix [true, predicted] (int32 counts; per-class accuracy and confusion.png)."""

    @jax.jit
    def eval_step(params, batch_stats, batch):
        images = normalize(batch["image"], mean, std, dtype)
        logits, _ = split.apply(params, batch_stats, images, train=False)
        labels, mask = batch["label"], batch["mask"].astype(jnp.float32)
        # A contraction over the (sharded) batch, like the sums: XLA all-reduces it to a
        # replicated result on any mesh. float32 counts are exact below 2**24 per batch.
        num_classes = logits.shape[-1]
        true = jax.nn.one_hot(labels, num_classes, dtype=jnp.float32) * mask[:, None]
        predicted = jax.nn.one_hot(jnp.argmax(logits, axis=-1), num_classes, dtype=jnp.float32)
        confusion = jnp.round(true.T @ predicted).astype(jnp.int32)
        return {
            "loss": (cross_entropy(logits, labels, 0.0) * mask).sum(),
            "top1": (_topk_correct(logits, labels, 1) * mask).sum(),
            "top5": (_topk_correct(logits, labels, 5) * mask).sum(),
            "count": mask.sum(),
            "confusion": confusion,
        }

    return eval_step


def accumulate(total, metrics):
    return metrics if total is None else jax.tree.map(jnp.add, total, metrics)

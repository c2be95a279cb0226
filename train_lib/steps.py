"""Pure train and eval steps, in jit mode (global batch, synced BatchNorm) and pmap mode
(per-device program via shard_map: per-device BatchNorm, pmean of gradients and statistics)."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from models import compat
from train_lib import ema as ema_lib
from train_lib import erasing
from train_lib import loss_scale as loss_scale_lib
from train_lib import mixup as mixup_lib
from train_lib.mesh import DATA_AXIS
from train_lib.recipes.mixup import MixupSpec
from train_lib.state import SplitModel, TrainState


def normalize(images: jax.Array, mean, std, dtype) -> jax.Array:
    """uint8 NHWC -> normalised compute dtype, on device."""
    x = images.astype(jnp.float32) / 255.0
    x = (x - jnp.asarray(mean, jnp.float32)) / jnp.asarray(std, jnp.float32)
    return x.astype(dtype)


def cross_entropy(
    logits: jax.Array, labels: jax.Array, smoothing: float, mode: str = "uniform"
) -> jax.Array:
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


def soft_cross_entropy(logits: jax.Array, targets: jax.Array) -> jax.Array:
    """Per-example CE against soft targets (mixup / cutmix), in float32."""
    return optax.softmax_cross_entropy(logits.astype(jnp.float32), targets)


def _topk_correct(logits: jax.Array, labels: jax.Array, k: int) -> jax.Array:
    k = min(k, logits.shape[-1])
    return jnp.any(jax.lax.top_k(logits, k)[1] == labels[:, None], axis=-1)


def _micro_batches(x: jax.Array, k: int) -> jax.Array:
    """(B, ...) -> (k, B/k, ...), micro-batch i = rows i, i+k, ...: every device keeps its own
    share of every micro-batch, so splitting moves no data between devices."""
    return jnp.swapaxes(x.reshape(x.shape[0] // k, k, *x.shape[1:]), 0, 1)


def make_train_step(
    split: SplitModel,
    tx: optax.GradientTransformation,
    *,
    mean,
    std,
    dtype,
    label_smoothing: float,
    mesh: Mesh,
    mode: str = "jit",
    mixup: MixupSpec | None = None,
    ema_decay: float = 0.0,
    ema_warmup: bool = False,
    accum_steps: int = 1,
    label_smoothing_mode: str = "uniform",
):
    """Returns step(state, batch) -> (state, metric sums); state is donated.

    With `mixup` enabled the batch is mixed on device and the loss takes the soft targets. With
    accum_steps = k the batch is split into k micro-batches whose gradients are averaged (a
    lax.scan inside this one step, BatchNorm statistics threaded through them) before one
    optimizer update. With state.loss_scale set (float16) the loss is scaled, and a step whose
    gradients overflow leaves params, optimizer state and statistics as they were.
    """
    mixing = mixup is not None and mixup.enabled
    per_device = mode == "pmap"

    def step(state: TrainState, batch):
        rng = jax.random.fold_in(jax.random.wrap_key_data(state.rng), state.step)
        if per_device:  # each device drops different units
            rng = jax.random.fold_in(rng, jax.lax.axis_index(DATA_AXIS))
        # float32 until the batch is final (normalize casts last, so this is the same image)
        images = normalize(batch["image"], mean, std, jnp.float32)
        if "erase" in batch:  # data.random_erase: rectangles drawn on the host, filled here
            images = erasing.apply(images, batch["erase"], rng)
        labels, targets = batch["label"], None
        if mixing:  # after erasing, as timm (per-image transforms, then the batch is mixed)
            images, targets = mixup_lib.apply(
                rng, mixup, images, labels, split.num_classes, label_smoothing
            )
        images = images.astype(dtype)
        scale = None if state.loss_scale is None else state.loss_scale["scale"]
        params_in = state.params
        if per_device:
            # Each device differentiates its own copy: for params left replicated (invariant
            # over the mesh axis), jax's autodiff would already sum the devices' gradients, and
            # the pmean below would then apply the device count times the mean gradient.
            params_in = jax.lax.pcast(params_in, DATA_AXIS, to="varying")

        def grads_of(stats, images, labels, targets, rng):
            def loss_fn(params):
                logits, new_stats = split.apply(params, stats, images, train=True, rng=rng)
                if mixing:
                    loss = soft_cross_entropy(logits, targets).mean()
                else:
                    loss = cross_entropy(
                        logits, labels, label_smoothing, label_smoothing_mode
                    ).mean()
                return (loss if scale is None else loss * scale), (loss, logits, new_stats)

            (_, (loss, logits, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(
                params_in
            )
            n = jnp.asarray(labels.shape[0], jnp.float32)
            metrics = {
                "loss": loss * n,
                "top1": _topk_correct(logits, labels, 1).sum().astype(jnp.float32),
                "count": n,
            }
            return grads, new_stats, metrics

        if accum_steps == 1:
            grads, stats, metrics = grads_of(state.batch_stats, images, labels, targets, rng)
        else:
            micro = jax.tree.map(
                lambda x: _micro_batches(x, accum_steps), (images, labels, targets)
            )

            def body(carry, xs):
                grads_sum, stats, metrics_sum = carry
                i, (mi, ml, mt) = xs
                g, stats, m = grads_of(stats, mi, ml, mt, jax.random.fold_in(rng, i))
                return (
                    jax.tree.map(jnp.add, grads_sum, g),
                    stats,
                    jax.tree.map(jnp.add, metrics_sum, m),
                ), None

            zeros = (
                jax.tree.map(jnp.zeros_like, params_in),  # typed as params_in: per device in pmap
                state.batch_stats,
                {k: jnp.zeros((), jnp.float32) for k in ("loss", "top1", "count")},
            )
            if per_device:  # the scan's carry keeps its type: the micro-batches' statistics and
                # metrics differ per device, so their starting values must be typed so too
                zeros = (zeros[0], *jax.lax.pcast(zeros[1:], DATA_AXIS, to="varying"))
            (grads, stats, metrics), _ = jax.lax.scan(body, zeros, (jnp.arange(accum_steps), micro))
            grads = jax.tree.map(lambda g: g / accum_steps, grads)
        if scale is not None:
            grads = jax.tree.map(lambda g: g / scale, grads)
        if per_device:
            grads = jax.lax.pmean(grads, DATA_AXIS)
            # The running-average update is linear, so averaging the per-device statistics each
            # step equals averaging them before evaluation; the state stays replicated.
            stats = jax.lax.pmean(stats, DATA_AXIS)
            metrics = jax.lax.psum(metrics, DATA_AXIS)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        loss_scale, took_step = state.loss_scale, None
        if loss_scale is not None:  # an overflowing step changes nothing but the scale
            finite = loss_scale_lib.all_finite(grads)
            params, opt_state, stats = loss_scale_lib.select(
                finite,
                (params, opt_state, stats),
                (state.params, state.opt_state, state.batch_stats),
            )
            loss_scale = loss_scale_lib.adjust(loss_scale, finite)
            took_step = jnp.where(finite, 1.0, 0.0)
            metrics = {**metrics, "skipped": 1.0 - took_step}  # summed: skipped steps per row
        ema = state.ema
        if ema is not None:  # train.ema_decay: average after every optimizer step
            decay = ema_lib.decay_at(state.step + 1, ema_decay, ema_warmup)
            if took_step is not None:  # no averaging on a skipped step
                decay = jnp.where(took_step > 0, decay, 1.0)
            ema = ema_lib.update(ema, params, stats, decay)
        new_state = state.replace(
            step=state.step + 1,
            params=params,
            batch_stats=stats,
            opt_state=opt_state,
            ema=ema,
            loss_scale=loss_scale,
        )
        return new_state, metrics

    if per_device:
        step = jax.shard_map(step, mesh=mesh, in_specs=(P(), P(DATA_AXIS)), out_specs=(P(), P()))
    return jax.jit(step, donate_argnums=0, compiler_options=compat.cpu_step_compiler_options())


def make_eval_step(split: SplitModel, *, mean, std, dtype):
    """Returns eval(params, batch_stats, batch) -> masked sums (loss, top1, top5, count) and the
    confusion matrix [true, predicted] (int32 counts; per-class accuracy and confusion.png)."""

    @functools.partial(jax.jit, compiler_options=compat.cpu_step_compiler_options())
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

"""Building blocks shared by every family: convs with PyTorch padding, BatchNorm, pooling, DropPath.

Every conv pads symmetrically (k // 2 on each side), as all reference code bases do. Flax's
'SAME' pads (0, 1) at stride 2 and would not load their weights exactly.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
from flax import nnx

from models import compat

# PyTorch Linear/Conv default: U(+-1/sqrt(fan_in)).
torch_default_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
xavier_normal = nnx.initializers.variance_scaling(1.0, "fan_avg", "normal")  # untruncated
# timm's trunc_normal_(std=.02) truncates at +-2 absolute, i.e. at 100 sigma: a plain normal.
dense_init = nnx.initializers.normal(stddev=0.02)


def torch_bias_init(fan_in: int) -> nnx.Initializer:
    """PyTorch's default bias init, U(+-1/sqrt(fan_in)); Flax initialisers only see the shape."""
    bound = 1.0 / math.sqrt(fan_in)

    def init(key: jax.Array, shape, dtype=jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


kaiming_normal_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv2d(
    in_features: int,
    out_features: int,
    kernel: int,
    *,
    stride: int = 1,
    padding: int | None = None,
    groups: int = 1,
    bias: bool = False,
    kernel_init=xavier_normal,
    bias_init=nnx.initializers.zeros,
    conv_general_dilated=jax.lax.conv_general_dilated,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A conv with symmetric padding (k//2 unless `padding` is given), float32 parameters and
    the given compute dtype. Every family's conv is built here."""
    pad = kernel // 2 if padding is None else padding
    return nnx.Conv(
        in_features,
        out_features,
        (kernel, kernel),
        strides=(stride, stride),
        padding=((pad, pad), (pad, pad)),
        feature_group_count=groups,
        use_bias=bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        conv_general_dilated=conv_general_dilated,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def batch_norm(
    features: int, *, dtype=jnp.float32, rngs: nnx.Rngs, epsilon: float = 1e-5
) -> BatchNorm:
    """BatchNorm with PyTorch/MindSpore semantics: momentum 0.9 (torch 0.1), eps 1e-5.

    The running variance averages the unbiased batch variance (PyTorch, MindSpore; Flax takes
    the biased one). Two-pass batch variance, as PyTorch computes it: Flax's default E[x^2] - E[x]^2 cancels when
    |mean| >> std (late 1x1 feature maps), and the lost digits depend on the reduction order, so
    1 and 8 devices disagreed by 0.3% in the running variance after 3 steps. The module is
    `BatchNorm` below (nnx.BatchNorm with a train-mode update that is cheap to trace).
    """
    return BatchNorm(
        features,
        momentum=0.9,
        epsilon=epsilon,
        dtype=dtype,
        param_dtype=jnp.float32,
        use_fast_variance=False,
        rngs=rngs,
    )


def linear(
    in_features: int,
    out_features: int,
    *,
    bias: bool = True,
    kernel_init=torch_default_init,
    bias_init=nnx.initializers.zeros,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Linear:
    return nnx.Linear(
        in_features,
        out_features,
        use_bias=bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def relu(x: jax.Array) -> jax.Array:
    """ReLU written as a select, `where(x <= 0, 0, x)`: the same values (NaN stays NaN) and
    gradients as jax.nn.relu, but XLA keeps it as one buffer.

    Why: XLA treats `max(x, 0)` as a unary op that is free to duplicate, so in a residual chain
    (each block's output feeds the next conv and the next block's add) it fused every earlier
    block's BatchNorm + add + ReLU into each later add and recomputed them: one fusion of
    HRNet-W18's eval step read 45 conv outputs, and these fusions took 46% of the step. A
    select reads two full-size operands, so XLA does not duplicate it.
    """
    return jnp.where(x <= 0, jnp.zeros((), x.dtype), x)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def max_pool(x: jax.Array, window: int, stride: int, padding: int) -> jax.Array:
    """NHWC max pooling, symmetric -inf padding; the gradient goes to the first maximum of each
    window in row-major order, as XLA's select-and-scatter (and PyTorch) send it.

    Why a custom backward: XLA:CPU lowers the select-and-scatter of the default gradient through
    activation-sized iotas and reduce-windows (1.1 s of HarDNet-68's 10 s train step, one
    thread); here it is k*k compares and strided pads that fuse. Same values and gradients.
    """
    p = padding
    return nnx.max_pool(x, (window, window), (stride, stride), ((p, p), (p, p)))


def _max_pool_fwd(x, window, stride, padding):
    out = max_pool(x, window, stride, padding)
    return out, (x, out)


def _max_pool_bwd(window, stride, padding, residuals, g):
    x, out = residuals
    _, h, w, _ = x.shape
    p = padding
    xp = jnp.pad(x, ((0, 0), (p, p), (p, p), (0, 0)), constant_values=-jnp.inf)
    hp, wp = xp.shape[1], xp.shape[2]
    ho, wo = out.shape[1], out.shape[2]
    taken = jnp.zeros(out.shape, bool)
    dxp = jnp.zeros(xp.shape, g.dtype)
    zero = jnp.zeros((), g.dtype)
    for i in range(window):
        for j in range(window):
            hi, wj = i + stride * (ho - 1) + 1, j + stride * (wo - 1) + 1
            tap = xp[:, i:hi:stride, j:wj:stride, :]
            hit = (tap == out) & ~taken
            taken = taken | hit
            dxp = dxp + jax.lax.pad(
                jnp.where(hit, g, zero),
                zero,
                ((0, 0, 0), (i, hp - hi, stride - 1), (j, wp - wj, stride - 1), (0, 0, 0)),
            )
    return (dxp[:, p : p + h, p : p + w, :],)


max_pool.defvjp(_max_pool_fwd, _max_pool_bwd)


class MaxPool(nnx.Module):
    """Max pooling with symmetric padding (padding acts as -inf, like PyTorch)."""

    def __init__(self, window: int, stride: int, padding: int = 0):
        self.window, self.stride, self.padding = window, stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        return max_pool(x, self.window, self.stride, self.padding)


class GlobalAvgPool(nnx.Module):
    """(B, H, W, C) -> (B, C), accumulating in float32."""

    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)


class Flatten(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return x.reshape(x.shape[0], -1)


class Identity(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return x


class ParamKeys:
    """Hands out parameter keys like `nnx.Rngs.params()`, counting in Python. Every family's
    builder passes one to its layers; Dropout/DropPath take the streams behind it (`rng_streams`).

    Why: under a traced build (registry's jitted init, `registry.abstract`) every `Rngs.params()`
    call writes its traced counter back through `Variable.set_value`, which on flax 0.12.8 asks
    the tracer for `.sharding`; building that AttributeError's message walks the whole jaxpr
    traced so far, so the build is quadratic in the number of layers (HRNet-W48: ~25 s of
    tracing for 1.6k variables; hlg_large's abstract build 40 s).
    """

    def __init__(self, rngs: nnx.Rngs):
        self.rngs = rngs
        self._key = rngs.params()
        self._count = 0

    def params(self) -> jax.Array:
        self._count += 1
        return jax.random.fold_in(self._key, self._count)


def rng_streams(rngs: nnx.Rngs | ParamKeys) -> nnx.Rngs:
    """The nnx.Rngs behind `rngs`, for layers that keep a stream (one counter write each)."""
    return rngs.rngs if isinstance(rngs, ParamKeys) else rngs


class DropPath(nnx.Dropout):
    """Stochastic depth (timm semantics): drops whole samples, scales survivors by 1/keep.

    A Dropout whose mask is broadcast over every axis but the batch axis. `ndim` is the rank of
    the input it will see (4 for NHWC maps, 3 for tokens).
    """

    def __init__(self, rate: float, *, ndim: int, rngs: nnx.Rngs | ParamKeys):
        super().__init__(rate, broadcast_dims=tuple(range(1, ndim)), rngs=rng_streams(rngs))


def depthwise_conv_general_dilated(
    lhs,
    rhs,
    window_strides,
    padding,
    lhs_dilation=None,
    rhs_dilation=None,
    dimension_numbers=None,
    feature_group_count=1,
    precision=None,
    **kwargs,
):
    """`lax.conv_general_dilated` for NHWC/HWIO convs whose groups each read one input channel
    (depthwise, optionally with a channel multiplier), as kh*kw shifted multiply-adds.

    XLA:CPU runs `feature_group_count` convs 4-16x slower than this (measured on a 3x3 over
    8x56x56x128: 0.145 s vs 0.009 s). Pass it as `nnx.Conv(..., conv_general_dilated=...)`:
    parameters are unchanged. Output channel o reads input channel o // multiplier, the grouping
    of XLA and PyTorch. Sums accumulate in float32. Anything else goes to lax unchanged.
    """
    kh, kw, cin_per_group, cout = rhs.shape
    cin = lhs.shape[-1]
    simple = (
        lhs.ndim == 4
        and cin_per_group == 1
        and feature_group_count == cin
        and cout % cin == 0
        and not isinstance(padding, str)
        and all(d == 1 for d in (lhs_dilation or (1, 1)))
        and all(d == 1 for d in (rhs_dilation or (1, 1)))
        and kwargs.get("out_sharding") is None
        and kwargs.get("preferred_element_type") is None
    )
    if not simple:
        return jax.lax.conv_general_dilated(
            lhs,
            rhs,
            window_strides,
            padding,
            lhs_dilation=lhs_dilation,
            rhs_dilation=rhs_dilation,
            dimension_numbers=dimension_numbers,
            feature_group_count=feature_group_count,
            precision=precision,
            **kwargs,
        )
    (pt, pb), (pl, pr) = padding
    sh, sw = window_strides
    acc_dtype = jnp.promote_types(lhs.dtype, jnp.float32)
    if (sh, sw) == (kh, kw) and cout == cin and not any((pt, pb, pl, pr)):
        # Non-overlapping windows (HLG's 7x7 stride-7 window tokens): one multiply and a sum
        # over each window, instead of kh*kw shifted copies (49 slices, products and adds per
        # call, each with its own backward) that XLA then compiles one by one.
        b, h, w, _ = lhs.shape
        ho, wo = h // kh, w // kw
        x = lhs[:, : ho * kh, : wo * kw, :].reshape(b, ho, kh, wo, kw, cin).astype(acc_dtype)
        taps = rhs[:, :, 0, :].astype(acc_dtype).reshape(1, 1, kh, 1, kw, cin)
        return (x * taps).sum(axis=(2, 4)).astype(lhs.dtype)
    x = jnp.pad(lhs, ((0, 0), (pt, pb), (pl, pr), (0, 0)))
    if cout != cin:
        x = jnp.repeat(x, cout // cin, axis=-1)
    ho = (x.shape[1] - kh) // sh + 1
    wo = (x.shape[2] - kw) // sw + 1
    out = jnp.zeros((x.shape[0], ho, wo, cout), acc_dtype)
    for i in range(kh):
        for j in range(kw):
            tap = x[:, i : i + sh * (ho - 1) + 1 : sh, j : j + sw * (wo - 1) + 1 : sw, :]
            out = out + tap.astype(acc_dtype) * rhs[i, j, 0].astype(acc_dtype)
    return out.astype(lhs.dtype)


class BatchNorm(nnx.BatchNorm):
    """nnx.BatchNorm whose train-mode statistics update is cheap to trace; same outputs.

    Why: flax 0.12.8 writes the running statistics as `self.mean[...] = new`. For a traced value,
    Variable.set_value then reads the tracer's `.sharding`, and JAX builds that AttributeError's
    message by walking the whole jaxpr traced so far, so tracing a train step is quadratic in
    the number of BatchNorms (HRNet-W18, 325 of them: 53 of the 70 s spent tracing its train
    step; HLG-tiny: 8 of 19 s). Writing with `set_value(new)` (a whole replacement, as `[...] =` is here) skips that
    check. Eval mode is nnx.BatchNorm's own code; train mode reuses its statistics and
    normalisation helpers, so outputs and updated statistics are identical, and has its own
    backward (`_batch_norm_train`: faster, and as close to float64) unless it takes a mask or
    cross-device statistics (`axis_name`), which keep autodiff. On CPU, maps of at least
    MATVEC_SUM_MIN_ROWS rows sum their statistics and gradients through matvecs (`_channel_sums`):
    equal to nnx's up to float32 rounding, not bit for bit.
    """

    def __call__(self, x, use_running_average: bool | None = None, *, mask=None):
        use_running = (
            self.use_running_average if use_running_average is None else use_running_average
        )
        if use_running is None or use_running:
            return super().__call__(x, use_running_average, mask=mask)
        feature_axes = compat.canonicalize_axes(x.ndim, self.axis)
        reduction_axes = tuple(i for i in range(x.ndim) if i not in feature_axes)
        scale = self.scale[...] if self.scale is not None else None
        bias = self.bias[...] if self.bias is not None else None
        x, _, _, scale, bias = self.promote_dtype(
            (x, self.mean[...], self.var[...], scale, bias), dtype=self.dtype
        )
        if mask is None and self.axis_name is None and scale is not None and bias is not None:
            y, mean, var = _batch_norm_train(
                *_vary_alike(x, scale, bias),
                reduction_axes,
                feature_axes,
                self.dtype,
                self.epsilon,
                self.use_fast_variance,
            )
        else:  # flax's own differentiation (masks, cross-device statistics, no scale/bias)
            y = None
            mean, var = compat.compute_stats(
                x,
                reduction_axes,
                dtype=self.dtype,
                axis_name=self.axis_name,
                axis_index_groups=self.axis_index_groups,
                use_fast_variance=self.use_fast_variance,
                mask=mask,
            )
        if compat.can_update(self.mean) or compat.can_update(
            self.var
        ):  # as nnx.BatchNorm: array refs only
            stop_gradient = jax.lax.stop_gradient
        else:

            def stop_gradient(v):
                return v

        self.mean.set_value(
            stop_gradient(self.momentum * self.mean[...] + (1 - self.momentum) * mean)
        )
        # The running variance takes the unbiased batch variance, as PyTorch and MindSpore do
        # (every recipe here comes from one of them); normalisation uses the biased one.
        n = math.prod(x.shape[i] for i in reduction_axes)
        unbiased = var * (n / max(n - 1, 1))
        self.var.set_value(
            stop_gradient(self.momentum * self.var[...] + (1 - self.momentum) * unbiased)
        )
        if y is not None:
            return y
        return compat.normalize(
            x, mean, var, scale, bias, reduction_axes, feature_axes, self.dtype, self.epsilon
        )


def _vary_alike(*arrays: jax.Array) -> tuple[jax.Array, ...]:
    """Each array cast to vary over every manual (shard_map) mesh axis that any of them varies
    over; unchanged outside shard_map.

    Why: a custom backward must return each cotangent with its input's type. Inside shard_map
    the input varies over the batch axis while scale and bias are replicated (invariant), and
    autodiff would sum their per-device cotangents across devices implicitly. Casting them to
    varying first (jax.lax.pcast) makes that sum the transpose of the cast: jax still adds it,
    and the backward below sees inputs of one type."""
    axes = frozenset().union(*(compat.varying_axes(a) for a in arrays))
    out = []
    for a in arrays:
        missing = axes - compat.varying_axes(a)
        out.append(
            jax.lax.pcast(a, tuple(sorted(missing, key=str)), to="varying") if missing else a
        )
    return tuple(out)


# Per-channel sums over at least this many rows (N*H*W) run as matvecs on CPU; see
# `_channel_sums`. Smaller maps keep nnx.BatchNorm's reductions, bit for bit.
MATVEC_SUM_MIN_ROWS = 1024


def _matvec_sums(shape, reduction_axes, feature_axes) -> bool:
    """Whether the train-mode statistics and gradient sums of a map of `shape` use
    `_channel_sums` (CPU, channels last, at least MATVEC_SUM_MIN_ROWS rows)."""
    rows = math.prod(shape[i] for i in reduction_axes)
    return (
        jax.default_backend() == "cpu"
        and tuple(feature_axes) == (len(shape) - 1,)
        and rows >= MATVEC_SUM_MIN_ROWS
    )


def _channel_sums(a: jax.Array) -> jax.Array:
    """Sum of a channels-last array over every axis but the last, as ones @ a.reshape(-1, C).

    Why: XLA:CPU emits a reduction over the major axes of a large map (BatchNorm's statistics
    and gradient sums) as a strided loop per channel, and fuses the elementwise producer into
    it: summing (x - mean)^2 over 8x56x56x48 took 2.6 ms, the elementwise pass plus this
    matvec 0.8 ms. A dot is not fused with its producer, and runs at memory speed.

    In two levels, so that no float32 running sum grows long (a matvec adds its rows in order):
    the dot sums over the leading axes (N*H rows of W*C values), then the W partial sums of
    each channel are added; as close to a float64 sum as XLA's reduction."""
    c = a.shape[-1]
    width = a.shape[-2] if a.ndim > 2 else 1
    rows = a.reshape(-1, width * c)
    ones = jnp.ones((rows.shape[0],), a.dtype)
    partial = jnp.dot(ones, rows, precision=jax.lax.Precision.HIGHEST)
    return partial.reshape(width, c).sum(0)


def _batch_norm_train_forward(x, scale, bias, reduction_axes, feature_axes, dtype, eps, fast_var):
    """nnx.BatchNorm's train-mode output and batch statistics (its own helpers: same values),
    except that on CPU large maps sum through `_channel_sums` (same formulas, two passes)."""
    if not fast_var and _matvec_sums(x.shape, reduction_axes, feature_axes):
        n = math.prod(x.shape[i] for i in reduction_axes)
        xs = x.astype(jnp.promote_types(dtype or x.dtype, jnp.float32))
        mean = _channel_sums(xs) / n
        var = _channel_sums(jnp.square(xs - mean)) / n
    else:
        mean, var = compat.compute_stats(x, reduction_axes, dtype=dtype, use_fast_variance=fast_var)
    y = compat.normalize(x, mean, var, scale, bias, reduction_axes, feature_axes, dtype, eps)
    return y, mean, var


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6, 7))
def _batch_norm_train(x, scale, bias, reduction_axes, feature_axes, dtype, eps, fast_var):
    """Train-mode BatchNorm -> (y, batch mean, biased batch variance), with the textbook
    backward: two per-channel sums (of dy and dy * (x - mean)) and one elementwise pass for dx.

    Why: differentiating through the statistics' computation gives XLA a longer chain of
    reductions; this backward is 1.5-2.7x faster per layer on CPU and closer to a float64
    reference. Inputs must share one type under shard_map (`_vary_alike`)."""
    return _batch_norm_train_forward(
        x, scale, bias, reduction_axes, feature_axes, dtype, eps, fast_var
    )


def _batch_norm_train_fwd(x, scale, bias, reduction_axes, feature_axes, dtype, eps, fast_var):
    out = _batch_norm_train_forward(
        x, scale, bias, reduction_axes, feature_axes, dtype, eps, fast_var
    )
    return out, (x, scale, bias, out[1], out[2])


def _batch_norm_train_bwd(reduction_axes, feature_axes, dtype, eps, fast_var, residuals, cts):
    x, scale, bias, mean, var = residuals
    dy, dmean, dvar = cts
    stats_dtype = mean.dtype  # float32 at least, as the statistics were computed
    stats_shape = [1 if i in reduction_axes else d for i, d in enumerate(x.shape)]
    feature_shape = [d if i in feature_axes else 1 for i, d in enumerate(x.shape)]
    n = math.prod(x.shape[i] for i in reduction_axes)
    centred = x.astype(stats_dtype) - mean.reshape(stats_shape)
    inv_std = jax.lax.rsqrt(var + eps)
    dy = dy.astype(stats_dtype)
    # Rounded as autodiff rounds it (sum of dy * (x - mean), then times 1/std): op by op, the
    # parameters' gradients equal nnx.BatchNorm's bit for bit (below the matvec threshold).
    if _matvec_sums(x.shape, reduction_axes, feature_axes):
        dbias = _channel_sums(dy)
        dscale = _channel_sums(dy * centred) * inv_std
    else:
        dbias = dy.sum(reduction_axes)
        dscale = (dy * centred).sum(reduction_axes) * inv_std
    dx = (scale.astype(stats_dtype).reshape(feature_shape) * inv_std.reshape(stats_shape) / n) * (
        n * dy
        - dbias.reshape(stats_shape)
        - centred * (inv_std * dscale).reshape(stats_shape)  # x_hat * dscale
    )
    # The statistics are outputs too (the running averages); their cotangents are zero when
    # only the loss is differentiated. Variance clipped at 0 (E[x^2] - E[x]^2) is not special-cased.
    dx += (dmean.reshape(stats_shape) + 2.0 * dvar.reshape(stats_shape) * centred) / n
    return (
        dx.astype(x.dtype),
        dscale.reshape(scale.shape).astype(scale.dtype),
        dbias.reshape(bias.shape).astype(bias.dtype),
    )


_batch_norm_train.defvjp(_batch_norm_train_fwd, _batch_norm_train_bwd)


# --------------------------------------------------------------------------- transformer pieces
class GELU(nnx.Module):
    """Parameterless slot of a PyTorch Sequential (keeps the indices of later layers aligned)."""

    def __init__(self, approximate: bool = False):
        self.approximate = approximate

    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.gelu(x, approximate=self.approximate)


class ReLU(nnx.Module):
    def __call__(self, x: jax.Array) -> jax.Array:
        return jax.nn.relu(x)


class Sequential(nnx.List):
    """An nnx.List that calls its items in order: the state paths are `name.0`, `name.1`, ...,
    exactly PyTorch's nn.Sequential keys (nnx.Sequential would add a `.layers` level)."""

    def __call__(self, x: jax.Array) -> jax.Array:
        for layer in self:
            x = layer(x)
        return x


def layer_norm(features: int, *, eps: float = 1e-6, dtype, rngs: nnx.Rngs) -> nnx.LayerNorm:
    """LayerNorm with PyTorch's two-pass variance (the one-pass form loses digits on the HLG
    position-bias MLP's raw offsets); eps 1e-6 is timm's transformer default."""
    return nnx.LayerNorm(
        features,
        epsilon=eps,
        use_fast_variance=False,
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def dense(cin: int, cout: int, *, dtype, rngs: nnx.Rngs) -> nnx.Linear:
    """timm's transformer Linear: weights N(0, 0.02), zero bias."""
    return linear(cin, cout, kernel_init=dense_init, dtype=dtype, rngs=rngs)


def torch_conv2d(
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = True,
    dtype,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A conv with symmetric k//2 padding and PyTorch's default init (kaiming_uniform a=sqrt(5)
    and its bias rule). Grouped convs (all of them depthwise here) run as shifted multiply-adds,
    several times faster than XLA:CPU's grouped conv, with the same parameters."""
    fan_in = cin // groups * kernel * kernel
    conv_fn = depthwise_conv_general_dilated if groups > 1 else jax.lax.conv_general_dilated
    return conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        groups=groups,
        bias=bias,
        kernel_init=torch_default_init,
        bias_init=torch_bias_init(fan_in),
        conv_general_dilated=conv_fn,
        dtype=dtype,
        rngs=rngs,
    )


def softmax(logits: jax.Array) -> jax.Array:
    """Softmax in float32 whatever the compute dtype (the references run it in fp32 under AMP)."""
    return jax.nn.softmax(logits.astype(jnp.float32), axis=-1).astype(logits.dtype)


def attention(
    q: jax.Array, k: jax.Array, v: jax.Array, heads: int, bias: jax.Array | None, scale: float
) -> jax.Array:
    """Multi-head attention on (B, N, C) q and (B, M, C) k, v; `bias` is (heads, N, M)."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    q = q.reshape(b, n, heads, d)
    k = k.reshape(b, m, heads, d)
    v = v.reshape(b, m, heads, d)
    logits = jnp.einsum("bnhd,bmhd->bhnm", q, k) * jnp.asarray(scale, q.dtype)
    if bias is not None:
        logits = logits + bias.astype(logits.dtype)[None]
    out = jnp.einsum("bhnm,bmhd->bnhd", softmax(logits), v)
    return out.reshape(b, n, c)


# --------------------------------------------------------------------------- model interface
class Classifier(nnx.Module):
    """timm's interface, which every family's network implements: `forward_features(x)` (NHWC
    images -> pooled features (B, num_features), before the head), `forward_head(features)`
    (-> float32 logits), `reset_classifier(num_classes)` (a fresh head, initialised as the family
    initialises it), `num_classes`, `num_features`. Fine-tuning and analysis use only this."""

    num_classes: int
    num_features: int

    def forward_features(self, x: jax.Array) -> jax.Array:
        raise NotImplementedError

    def forward_head(self, features: jax.Array) -> jax.Array:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int, *, rngs: nnx.Rngs | None = None) -> None:
        raise NotImplementedError

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.forward_head(self.forward_features(x))


class DenseHeadClassifier(Classifier):
    """A Classifier whose head is `self.head = dense(num_features, num_classes)` on the pooled
    features, with no dropout before it: both HLG builds (official and zoo) end this way."""

    head: nnx.Linear
    dtype: jnp.dtype

    def forward_head(self, features: jax.Array) -> jax.Array:
        return self.head(features).astype(jnp.float32)

    def reset_classifier(self, num_classes: int, *, rngs: nnx.Rngs | None = None) -> None:
        """A fresh head, N(0, 0.02) weights and zero bias (the official init_weights; the
        zoo's TruncatedNormal(0.02))."""
        self.head = dense(
            self.num_features, num_classes, dtype=self.dtype, rngs=rngs or nnx.Rngs(0)
        )
        self.num_classes = num_classes

"""Building blocks shared by every family: convs with PyTorch padding, BatchNorm, pooling, DropPath.

Every conv pads symmetrically (k // 2 on each side), as all reference code bases do. Flax's
'SAME' pads (0, 1) at stride 2 and would not load their weights exactly.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

# PyTorch Linear/Conv default: U(+-1/sqrt(fan_in)).
torch_default_init = nnx.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")
xavier_normal = nnx.initializers.variance_scaling(1.0, "fan_avg", "normal")  # untruncated
kaiming_normal_fan_out = nnx.initializers.variance_scaling(2.0, "fan_out", "normal")


def conv2d(
    in_features: int,
    out_features: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    kernel_init=xavier_normal,
    bias_init=nnx.initializers.zeros,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
) -> nnx.Conv:
    """A conv with symmetric k//2 padding, float32 parameters and the given compute dtype."""
    pad = kernel // 2
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
        dtype=dtype,
        param_dtype=jnp.float32,
        rngs=rngs,
    )


def batch_norm(
    features: int, *, dtype=jnp.float32, rngs: nnx.Rngs, epsilon: float = 1e-5
) -> nnx.BatchNorm:
    """BatchNorm with PyTorch/MindSpore semantics: momentum 0.9 (torch 0.1), eps 1e-5."""
    return nnx.BatchNorm(
        features, momentum=0.9, epsilon=epsilon, dtype=dtype, param_dtype=jnp.float32, rngs=rngs
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


class MaxPool(nnx.Module):
    """Max pooling with symmetric padding (padding acts as -inf, like PyTorch)."""

    def __init__(self, window: int, stride: int, padding: int = 0):
        self.window, self.stride, self.padding = window, stride, padding

    def __call__(self, x: jax.Array) -> jax.Array:
        p = self.padding
        return nnx.max_pool(
            x, (self.window, self.window), (self.stride, self.stride), ((p, p), (p, p))
        )


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


class DropPath(nnx.Dropout):
    """Stochastic depth (timm semantics): drops whole samples, scales survivors by 1/keep.

    A Dropout whose mask is broadcast over every axis but the batch axis. `ndim` is the rank of
    the input it will see (4 for NHWC maps, 3 for tokens).
    """

    def __init__(self, rate: float, *, ndim: int, rngs: nnx.Rngs):
        super().__init__(rate, broadcast_dims=tuple(range(1, ndim)), rngs=rngs)

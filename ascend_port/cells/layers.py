"""Building blocks with every MindSpore default that differs from Flax spelled out.

MindSpore 2.10 defaults that would silently break parity (shared/notes/mindspore_probe.md):
Conv2d pad_mode='same' and has_bias=False, BatchNorm momentum, LayerNorm epsilon 1e-7, GELU tanh,
MaxPool2d 'valid'. Each builder here passes all of them explicitly, matching models/layers.py.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import initializer as init

# models/layers.py: xavier_normal (untruncated) for HarDNet convs; PyTorch default for Linear,
# which MindSpore's HeUniform(sqrt(5)) equals: U(+-1/sqrt(fan_in)).
XAVIER_NORMAL = init.XavierNormal(gain=1.0)
TORCH_DEFAULT = init.HeUniform(negative_slope=5**0.5)


def conv2d(
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    weight_init: init.Initializer | str = XAVIER_NORMAL,
) -> nn.Conv2d:
    """Conv with symmetric k//2 padding (Flax ((p, p), (p, p))), never MindSpore's 'same'."""
    return nn.Conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        pad_mode="pad",
        padding=kernel // 2,
        group=groups,
        has_bias=bias,
        weight_init=weight_init,
        bias_init="zeros",
    )


def batch_norm(features: int, *, eps: float = 1e-5) -> nn.BatchNorm2d:
    """BN momentum 0.9 (Flax/MindSpore convention), eps 1e-5; batch statistics follow
    `cell.set_train()` (use_batch_statistics=None), as Flax's train()/eval() switch does."""
    return nn.BatchNorm2d(features, eps=eps, momentum=0.9, use_batch_statistics=None)


def dense(
    cin: int,
    cout: int,
    *,
    bias: bool = True,
    weight_init: init.Initializer | str = TORCH_DEFAULT,
) -> nn.Dense:
    return nn.Dense(cin, cout, weight_init=weight_init, bias_init="zeros", has_bias=bias)


def max_pool(window: int, stride: int, padding: int = 0) -> nn.MaxPool2d:
    """Max pooling whose padding acts as -inf (PyTorch / Flax max_pool with explicit padding)."""
    if padding:
        return nn.MaxPool2d(kernel_size=window, stride=stride, pad_mode="pad", padding=padding)
    return nn.MaxPool2d(kernel_size=window, stride=stride, pad_mode="valid")


def dropout(rate: float) -> nn.Dropout:
    return nn.Dropout(p=rate)


class GlobalAvgPool(nn.Cell):
    """(B, C, H, W) -> (B, C), accumulating in float32 like the Flax side."""

    def construct(self, x):
        return ops.mean(x.astype(ms.float32), (2, 3)).astype(x.dtype)


def layer_norm(features: int, *, eps: float = 1e-6) -> nn.LayerNorm:
    """LayerNorm over the last axis with Flax's epsilon (MindSpore's default is 1e-7);
    parameters gamma/beta map to canonical scale/bias through the bridge."""
    return nn.LayerNorm((features,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)

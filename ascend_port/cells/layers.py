"""Building blocks with every MindSpore default that differs from Flax spelled out.

MindSpore 2.10 defaults that would silently break parity (each measured against Flax):
Conv2d pad_mode='same' and has_bias=False, BatchNorm momentum, LayerNorm epsilon 1e-7, GELU tanh,
MaxPool2d 'valid'. Each builder here passes all of them explicitly, matching models/layers.py.
"""

from __future__ import annotations

import math

import mindspore as ms
from mindspore import nn, ops
from mindspore.common import initializer as init

# models/layers.py: xavier_normal (untruncated) for HarDNet convs; PyTorch default for Linear,
# which MindSpore's HeUniform(sqrt(5)) equals: U(+-1/sqrt(fan_in)).
XAVIER_NORMAL = init.XavierNormal(gain=1.0)
TORCH_DEFAULT = init.HeUniform(negative_slope=5**0.5)


def torch_bias(fan_in: int) -> init.Initializer:
    """PyTorch's default bias init U(+-1/sqrt(fan_in)) (the Flax models' torch_bias_init)."""
    return init.Uniform(scale=1.0 / math.sqrt(fan_in))


def conv2d(
    cin: int,
    cout: int,
    kernel: int,
    *,
    stride: int = 1,
    groups: int = 1,
    bias: bool = False,
    padding: int | None = None,
    weight_init: init.Initializer | str = XAVIER_NORMAL,
    bias_init: init.Initializer | str = "zeros",
) -> nn.Conv2d:
    """Conv with symmetric padding (k//2 unless given; Flax ((p, p), (p, p))), never
    MindSpore's 'same', which pads (0, 1) at stride 2."""
    return nn.Conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        pad_mode="pad",
        padding=kernel // 2 if padding is None else padding,
        group=groups,
        has_bias=bias,
        weight_init=weight_init,
        bias_init=bias_init,
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
    bias_init: init.Initializer | str = "zeros",
) -> nn.Dense:
    return nn.Dense(cin, cout, weight_init=weight_init, bias_init=bias_init, has_bias=bias)


def max_pool(window: int, stride: int, padding: int = 0) -> nn.MaxPool2d:
    """Max pooling whose padding acts as -inf (PyTorch / Flax max_pool with explicit padding)."""
    if padding:
        return nn.MaxPool2d(kernel_size=window, stride=stride, pad_mode="pad", padding=padding)
    return nn.MaxPool2d(kernel_size=window, stride=stride, pad_mode="valid")


def dropout(rate: float) -> nn.Dropout:
    return nn.Dropout(p=rate)


# Abramowitz & Stegun 7.1.26: erf(x) = 1 - poly(t) exp(-x^2), t = 1 / (1 + p x), x >= 0;
# |error| <= 1.5e-7.
_ERF_P = 0.3275911
_ERF_A = (0.254829592, -0.284496736, 1.421413741, -1.453152027, 1.061405429)


def erf_for_onnx(x):
    """erf from Abs/Exp/Div/Mul/Add/Where (error <= 1.5e-7, plus float32 rounding).

    Why: MindSpore 2.10's ONNX exporter has no mapping for Erf ("Can not find key Erf in
    convert map"), so exact GELU cannot be exported; this is what an ONNX export uses instead.
    """
    a = ops.abs(x)
    t = ops.ones_like(a) / (1.0 + _ERF_P * a)  # not 1.0 / ...: no Reciprocal in ONNX export
    poly = _ERF_A[4]
    for coef in _ERF_A[3::-1]:
        poly = poly * t + coef
    y = 1.0 - poly * t * ops.exp(-a * a)
    return ops.select(x < 0, -y, y)


class ExactGELU(nn.Cell):
    """GELU with exact erf (PyTorch's nn.GELU(), the official HLG's). `for_onnx = True` (set
    by ascend_port.export before an ONNX export) swaps erf for `erf_for_onnx`."""

    def __init__(self):
        super().__init__()
        self.for_onnx = False

    def construct(self, x):
        if self.for_onnx:
            return 0.5 * x * (1.0 + erf_for_onnx(x * (2.0**-0.5)))
        return ops.gelu(x, approximate="none")


def gelu(*, approximate: bool) -> nn.Cell:
    """GELU with the flag explicit: MindSpore defaults to tanh, PyTorch (official HLG) is erf."""
    return nn.GELU(approximate=True) if approximate else ExactGELU()


class DropPath(nn.Cell):
    """Stochastic depth (timm semantics): in training, zeroes whole rows of the leading axis
    with probability `rate` and scales the survivors by 1/keep; the identity in eval mode.
    Like models.layers.DropPath, whose mask broadcasts over every axis but the first."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = float(rate)
        self.keep = 1.0 - float(rate)
        self.uniform = ops.UniformReal()

    def construct(self, x):
        if not self.training or self.rate == 0.0:
            return x
        shape = (x.shape[0],) + (1,) * (x.ndim - 1)
        mask = ops.floor(self.uniform(shape) + self.keep).astype(x.dtype)
        return x / self.keep * mask


class GlobalAvgPool(nn.Cell):
    """(B, C, H, W) -> (B, C), accumulating in float32 like the Flax side."""

    def construct(self, x):
        return ops.mean(x.astype(ms.float32), (2, 3)).astype(x.dtype)


def layer_norm(features: int, *, eps: float = 1e-6) -> nn.LayerNorm:
    """LayerNorm over the last axis with Flax's epsilon (MindSpore's default is 1e-7);
    parameters gamma/beta map to canonical scale/bias through the bridge."""
    return nn.LayerNorm((features,), begin_norm_axis=-1, begin_params_axis=-1, epsilon=eps)


class Classifier(nn.Cell):
    """timm's interface, as on the Flax models (models.layers.Classifier): `forward_features(x)`
    (NCHW images -> pooled (B, num_features)), `forward_head(features)` (-> float32 logits),
    `reset_classifier(num_classes)` (a fresh head initialised as the family does), `num_classes`,
    `num_features`. Subclasses provide the two forwards and `_new_head` / `_set_head`."""

    num_classes: int
    num_features: int

    def construct(self, x):
        return self.forward_head(self.forward_features(x))

    def _new_head(self, num_classes: int) -> nn.Cell:
        raise NotImplementedError

    def _set_head(self, head: nn.Cell) -> None:
        raise NotImplementedError

    def reset_classifier(self, num_classes: int) -> None:
        head = self._new_head(num_classes)
        self._set_head(head)
        fresh = {id(p) for p in head.get_parameters()}
        for name, param in self.parameters_and_names():  # the names a new build would have
            if id(param) in fresh:
                param.name = name
        self.num_classes = num_classes


class DenseHeadClassifier(Classifier):
    """A Classifier whose head is `self.head = dense(num_features, num_classes)` on the pooled
    features, with no dropout before it (models.layers.DenseHeadClassifier): both HLG builds
    end this way. `head_init`: the head's weight init, N(0, 0.02) as the official init_weights;
    the zoo's cell sets its TruncatedNormal(0.02)."""

    head_init = init.Normal(sigma=0.02)

    def _init_head(self, num_features: int, num_classes: int) -> None:
        self.num_classes, self.num_features = num_classes, num_features
        self.head = self._new_head(num_classes)

    def _new_head(self, num_classes: int) -> nn.Cell:
        return dense(self.num_features, num_classes, weight_init=self.head_init)

    def _set_head(self, head: nn.Cell) -> None:
        self.head = head

    def forward_head(self, features):
        return self.head(features).astype(ms.float32)

"""HRNet-classification (HRNetV2-C, Wang et al., TPAMI 2020): w18_small(_v2), w18 ... w64.

Follows the official code (HRNet/HRNet-Image-Classification, cls_hrnet.py), which timm copies:
the NNX module tree mirrors its attribute names and Sequential/ModuleList indices, so official and
timm state dicts load through `models.from_torch` with no rename table (identity paths, generic
leaf and layout rules). Slots that hold nn.Identity/None in PyTorch are parameterless
`layers.Identity` here, which keeps every index aligned.

One deliberate departure: a fuse layer upsamples to the *target branch's* height and width
(nearest, PyTorch/MindSpore index rule) instead of by a fixed 2^k, as the MindSpore model zoo
does. The two are identical when the input is a multiple of 32; other sizes (odd, non-square)
work here, where the official code fails with a shape mismatch.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import layers
from models.hrnet_arch import (
    CONFIGS,
    HEAD_PLANES,
    NUM_FEATURES,
    STEM_WIDTH,
    HRNetConfig,
    nearest_source_index,
)
from models.registry import register


def _conv(cin, cout, kernel, *, stride=1, bias=False, dtype, rngs):
    """HRNet conv, symmetric padding. The kernel is drawn later by `init_conv_kernels`."""
    return layers.conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        bias=bias,
        kernel_init=nnx.initializers.zeros,
        bias_init=layers.torch_bias_init(cin * kernel * kernel) if bias else nnx.initializers.zeros,
        dtype=dtype,
        rngs=rngs,
    )


def init_conv_kernels(module: nnx.Module, key: jax.Array) -> None:
    """Sets every conv kernel to kaiming-normal fan_out (official init_weights), in place.

    Equal in distribution to `layers.kaiming_normal_fan_out` per conv (N(0, 2 / (kh*kw*out)),
    untruncated), but drawn as one flat normal that is sliced. Why: registry.create jit-compiles
    the init, and XLA compiles every random-number op separately; one op per conv (325 in W18)
    costs ~33 CPU-s of compile, one flat draw ~8 CPU-s.
    """
    convs = [m for _, m in nnx.iter_modules(module) if isinstance(m, nnx.Conv)]
    sizes = [math.prod(c.kernel.shape) for c in convs]
    flat = jax.random.normal(key, (sum(sizes),), jnp.float32)
    offset = 0
    for conv, size in zip(convs, sizes, strict=True):
        kh, kw, _, cout = conv.kernel.shape
        std = np.float32(math.sqrt(2.0 / (kh * kw * cout)))
        conv.kernel.set_value(flat[offset : offset + size].reshape(conv.kernel.shape) * std)
        offset += size


def _conv_bn(cin, cout, kernel, *, stride=1, bias=False, dtype, rngs) -> nnx.List:
    """nn.Sequential(Conv2d, BatchNorm2d[, ReLU]): keys `.0` (conv) and `.1` (BN)."""
    return nnx.List(
        [
            _conv(cin, cout, kernel, stride=stride, bias=bias, dtype=dtype, rngs=rngs),
            layers.batch_norm(cout, dtype=dtype, rngs=rngs),
        ]
    )


def _apply_conv_bn(seq: nnx.List, x: jax.Array, relu: bool) -> jax.Array:
    x = seq[1](seq[0](x))
    return layers.relu(x) if relu else x


# --------------------------------------------------------------------------- residual blocks
class BasicBlock(nnx.Module):
    """conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) -ReLU; keys conv1/bn1/conv2/bn2[/downsample]."""

    expansion = 1

    def __init__(self, cin: int, planes: int, *, dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        self.conv1 = _conv(cin, planes, 3, **kw)
        self.bn1 = layers.batch_norm(planes, **kw)
        self.conv2 = _conv(planes, planes, 3, **kw)
        self.bn2 = layers.batch_norm(planes, **kw)
        self.downsample = _conv_bn(cin, planes, 1, **kw) if cin != planes else None

    def __call__(self, x: jax.Array) -> jax.Array:
        out = layers.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else _apply_conv_bn(self.downsample, x, False)
        return layers.relu(out + shortcut)


class Bottleneck(nnx.Module):
    """1x1-3x3-1x1 (x4) residual block; keys conv1..3/bn1..3[/downsample]. Stride is always 1."""

    expansion = 4

    def __init__(self, cin: int, planes: int, *, dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        cout = planes * self.expansion
        self.conv1 = _conv(cin, planes, 1, **kw)
        self.bn1 = layers.batch_norm(planes, **kw)
        self.conv2 = _conv(planes, planes, 3, **kw)
        self.bn2 = layers.batch_norm(planes, **kw)
        self.conv3 = _conv(planes, cout, 1, **kw)
        self.bn3 = layers.batch_norm(cout, **kw)
        self.downsample = _conv_bn(cin, cout, 1, **kw) if cin != cout else None

    def __call__(self, x: jax.Array) -> jax.Array:
        out = layers.relu(self.bn1(self.conv1(x)))
        out = layers.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else _apply_conv_bn(self.downsample, x, False)
        return layers.relu(out + shortcut)


def _make_layer(block, cin: int, planes: int, n: int, *, dtype, rngs) -> nnx.List:
    """`n` blocks; only the first changes the width (and so carries the 1x1 shortcut)."""
    cout = planes * block.expansion
    return nnx.List(
        [block(cin if k == 0 else cout, planes, dtype=dtype, rngs=rngs) for k in range(n)]
    )


def _run(modules: nnx.List, x):
    """Applies `modules` in order, unrolled. (A lax.scan over the identical units compiled a W18
    train step ~2x faster on CPU but ran it 3-5x slower, so it is not used.)"""
    for module in modules:
        x = module(x)
    return x


# --------------------------------------------------------------------------- nearest resize
def _nearest_axis(x: jax.Array, axis: int, size: int) -> jax.Array:
    """Nearest resize of one axis with PyTorch/MindSpore's rule: source = floor(dst * in / out).

    An integer factor is a plain repeat (cheap, and equal to the rule); otherwise a static gather.
    jax.image.resize uses half-pixel centres, which agree only for integer factors.
    """
    n = x.shape[axis]
    if size == n:
        return x
    if size % n == 0:
        return jnp.repeat(x, size // n, axis=axis)
    index = nearest_source_index(n, size)
    return jnp.take(x, jnp.asarray(index, dtype=jnp.int32), axis=axis)


def resize_nearest(x: jax.Array, height: int, width: int) -> jax.Array:
    """(B, h, w, C) -> (B, height, width, C), nearest neighbour as in torch `Upsample('nearest')`."""
    return _nearest_axis(_nearest_axis(x, 1, height), 2, width)


# --------------------------------------------------------------------------- HR module
class HighResolutionModule(nnx.Module):
    """Parallel branches of BasicBlocks, then every branch i sums all branches resampled to it.

    fuse_layers[i][j]: j > i: 1x1 conv + BN, then nearest upsample to branch i's size;
    j == i: identity; j < i: (i - j) stride-2 3x3 conv + BN, ReLU between them but not after.
    """

    def __init__(
        self, widths: tuple[int, ...], num_blocks: tuple[int, ...], *, dtype, rngs: nnx.Rngs
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.branches = nnx.List(
            [
                _make_layer(BasicBlock, c, c, n, **kw)
                for c, n in zip(widths, num_blocks, strict=True)
            ]
        )
        fuse = []
        for i, ci in enumerate(widths):
            row = []
            for j, cj in enumerate(widths):
                if j > i:
                    row.append(_conv_bn(cj, ci, 1, **kw))
                elif j == i:
                    row.append(layers.Identity())
                else:
                    row.append(
                        nnx.List(
                            [
                                _conv_bn(cj, ci if k == i - j - 1 else cj, 3, stride=2, **kw)
                                for k in range(i - j)
                            ]
                        )
                    )
            fuse.append(nnx.List(row))
        self.fuse_layers = nnx.List(fuse)

    def __call__(self, xs: list[jax.Array]) -> list[jax.Array]:
        xs = [_run(branch, x) for branch, x in zip(self.branches, xs, strict=True)]
        out = []
        for i, row in enumerate(self.fuse_layers):
            _, height, width, _ = xs[i].shape
            y = None
            for j, f in enumerate(row):
                if j > i:
                    t = resize_nearest(_apply_conv_bn(f, xs[j], False), height, width)
                elif j == i:
                    t = xs[j]
                else:
                    t = xs[j]
                    for k, seq in enumerate(f):
                        t = _apply_conv_bn(seq, t, relu=k < len(f) - 1)
                y = t if y is None else y + t
            out.append(layers.relu(y))
        return out


def _make_transition(prev: tuple[int, ...], cur: tuple[int, ...], *, dtype, rngs) -> nnx.List:
    """Existing branches: identity (or 3x3 conv-BN-ReLU if the width changes); a new branch:
    stride-2 3x3 conv-BN-ReLU chain from the lowest-resolution branch (keys `.i.k.0/1`)."""
    kw = dict(dtype=dtype, rngs=rngs)
    out = []
    for i, c in enumerate(cur):
        if i < len(prev):
            out.append(layers.Identity() if prev[i] == c else _conv_bn(prev[i], c, 3, **kw))
        else:
            n = i + 1 - len(prev)
            out.append(
                nnx.List(
                    [
                        _conv_bn(prev[-1], c if k == n - 1 else prev[-1], 3, stride=2, **kw)
                        for k in range(n)
                    ]
                )
            )
    return nnx.List(out)


def _apply_transition(transition: nnx.List, xs: list[jax.Array]) -> list[jax.Array]:
    # An existing branch whose width changes is fed from branch i. The official/timm code feeds
    # it from the last branch; no shipped config has such a branch, so both agree (spec §2.6).
    out = []
    for i, t in enumerate(transition):
        if i < len(xs):
            out.append(xs[i] if isinstance(t, layers.Identity) else _apply_conv_bn(t, xs[i], True))
        else:
            y = xs[-1]
            for seq in t:
                y = _apply_conv_bn(seq, y, True)
            out.append(y)
    return out


# --------------------------------------------------------------------------- network
class HRNet(layers.Classifier):
    """Stem (two stride-2 convs) -> layer1 -> 3 x (transition, stage) -> classification head.

    Head: incre_modules lift the 4 branches to 128/256/512/1024 ch; downsamp_modules carry the
    running sum down one resolution at a time (y = incre_b(x_b) + down_{b-1}(y), no extra ReLU);
    final_layer 1x1 -> 2048, global average pool, [dropout], classifier.
    """

    def __init__(
        self,
        cfg: HRNetConfig,
        *,
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=layers.ParamKeys(rngs))
        self.conv1 = _conv(3, STEM_WIDTH, 3, stride=2, **kw)
        self.bn1 = layers.batch_norm(STEM_WIDTH, **kw)
        self.conv2 = _conv(STEM_WIDTH, 64, 3, stride=2, **kw)
        self.bn2 = layers.batch_norm(64, **kw)
        self.layer1 = _make_layer(Bottleneck, 64, cfg.stage1_planes, cfg.stage1_blocks, **kw)

        prev = (cfg.stage1_planes * Bottleneck.expansion,)
        for s, num_modules in enumerate(cfg.modules, start=2):
            widths = cfg.widths(s)
            setattr(self, f"transition{s - 1}", _make_transition(prev, widths, **kw))
            setattr(
                self,
                f"stage{s}",
                nnx.List(
                    [
                        HighResolutionModule(widths, (cfg.blocks,) * s, **kw)
                        for _ in range(num_modules)
                    ]
                ),
            )
            prev = widths

        head = [p * Bottleneck.expansion for p in HEAD_PLANES]
        self.incre_modules = nnx.List(
            [_make_layer(Bottleneck, c, p, 1, **kw) for c, p in zip(prev, HEAD_PLANES, strict=True)]
        )
        self.downsamp_modules = nnx.List(
            [_conv_bn(head[b], head[b + 1], 3, stride=2, bias=True, **kw) for b in range(3)]
        )
        self.final_layer = _conv_bn(head[3], NUM_FEATURES, 1, bias=True, **kw)
        self.global_pool = layers.GlobalAvgPool()
        self.num_classes, self.num_features, self.dtype = num_classes, NUM_FEATURES, dtype
        self.classifier = self._classifier(num_classes, kw["rngs"])
        self.head_drop = nnx.Dropout(drop_rate, rngs=rngs)
        init_conv_kernels(self, rngs.params())

    def _classifier(self, num_classes: int, rngs) -> nnx.Linear:
        return layers.linear(
            NUM_FEATURES,
            num_classes,
            kernel_init=layers.torch_default_init,
            bias_init=layers.torch_bias_init(NUM_FEATURES),
            dtype=self.dtype,
            rngs=rngs,
        )

    def feature_map(self, x: jax.Array) -> jax.Array:
        """(B, H, W, 3) -> (B, ceil(H/32), ceil(W/32), 2048), before pooling."""
        x = layers.relu(self.bn1(self.conv1(x)))
        x = layers.relu(self.bn2(self.conv2(x)))
        xs = [_run(self.layer1, x)]
        for transition, stage in (
            (self.transition1, self.stage2),
            (self.transition2, self.stage3),
            (self.transition3, self.stage4),
        ):
            xs = _run(stage, _apply_transition(transition, xs))
        y = None
        for b, incre in enumerate(self.incre_modules):
            t = _run(incre, xs[b])
            y = t if y is None else t + _apply_conv_bn(self.downsamp_modules[b - 1], y, True)
        return _apply_conv_bn(self.final_layer, y, True)

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, H, W, 3) -> pooled (B, 2048)."""
        return self.global_pool(self.feature_map(x))

    def forward_head(self, features: jax.Array) -> jax.Array:
        return self.classifier(self.head_drop(features)).astype(jnp.float32)

    def reset_classifier(self, num_classes: int, *, rngs: nnx.Rngs | None = None) -> None:
        """A fresh Linear head with PyTorch's default init, as the official code builds it."""
        self.classifier = self._classifier(num_classes, rngs or nnx.Rngs(0))
        self.num_classes = num_classes


# --------------------------------------------------------------------------- registry
def _build(
    variant: str,
    *,
    num_classes: int = 1000,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
    drop_rate: float | None = None,
) -> HRNet:
    return HRNet(
        CONFIGS[variant],
        num_classes=num_classes,
        drop_rate=drop_rate or 0.0,
        dtype=dtype,
        rngs=rngs,
    )


for _name in CONFIGS:
    register(_name, functools.partial(_build, _name))

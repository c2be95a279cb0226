"""HRNet-classification cells (w18_small ... w64) mirroring models/hrnet.py attribute for attribute.

Tables come from models/hrnet_arch.py, shared with the Flax model. Every `nnx.List` of the NNX
tree is an `nn.CellList` (or an `nn.SequentialCell` where the Flax code runs it in order), so
a parameter such as `stage3.0.fuse_layers.2.0.1.0.weight` is the canonical
`stage3.0.fuse_layers.2.0.1.0.kernel` up to the generic leaf rename of ascend_port.bridge. The
Flax `_conv_bn` pair is a SequentialCell([conv, BN]); where Flax applies a ReLU after it, the
cell appends a parameterless nn.ReLU at index 2 (as the MindSpore zoo does), which leaves every
parameter name unchanged. These are also the zoo's HRNetW48_cls names (ascend_port/zoo.py).

Fuse layers upsample to the target branch's size with the Flax model's integer nearest rule
(models.hrnet_arch.nearest_source_index), so even and odd input sizes agree with it.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common import initializer as init

from ascend_port.cells import layers
from models.hrnet_arch import (
    CONFIGS,
    HEAD_PLANES,
    NUM_FEATURES,
    STEM_WIDTH,
    HRNetConfig,
    nearest_source_index,
)

# Official init_weights: kaiming_normal(fan_out, relu), untruncated (models/hrnet.py).
KAIMING_FAN_OUT = init.HeNormal(mode="fan_out", nonlinearity="relu")


def _conv(cin: int, cout: int, kernel: int, *, stride: int = 1, bias: bool = False) -> nn.Conv2d:
    fan_in = cin * kernel * kernel
    return layers.conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        bias=bias,
        weight_init=KAIMING_FAN_OUT,
        bias_init=layers.torch_bias(fan_in) if bias else "zeros",
    )


def _conv_bn(
    cin: int, cout: int, kernel: int, *, stride: int = 1, bias: bool = False, relu: bool
) -> nn.SequentialCell:
    """Flax `_conv_bn` (keys `.0` conv, `.1` BN), plus the ReLU Flax applies after it."""
    cells = [_conv(cin, cout, kernel, stride=stride, bias=bias), layers.batch_norm(cout)]
    if relu:
        cells.append(nn.ReLU())
    return nn.SequentialCell(cells)


class BasicBlock(nn.Cell):
    """conv3x3-BN-ReLU-conv3x3-BN (+ shortcut) -ReLU; attributes conv1/bn1/conv2/bn2/downsample."""

    expansion = 1

    def __init__(self, cin: int, planes: int):
        super().__init__()
        self.conv1 = _conv(cin, planes, 3)
        self.bn1 = layers.batch_norm(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = layers.batch_norm(planes)
        self.downsample = _conv_bn(cin, planes, 1, relu=False) if cin != planes else None
        self.relu = nn.ReLU()

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


class Bottleneck(nn.Cell):
    """1x1-3x3-1x1 (x4) residual block; attributes conv1..3/bn1..3/downsample. Stride 1."""

    expansion = 4

    def __init__(self, cin: int, planes: int):
        super().__init__()
        cout = planes * self.expansion
        self.conv1 = _conv(cin, planes, 1)
        self.bn1 = layers.batch_norm(planes)
        self.conv2 = _conv(planes, planes, 3)
        self.bn2 = layers.batch_norm(planes)
        self.conv3 = _conv(planes, cout, 1)
        self.bn3 = layers.batch_norm(cout)
        self.downsample = _conv_bn(cin, cout, 1, relu=False) if cin != cout else None
        self.relu = nn.ReLU()

    def construct(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        shortcut = x if self.downsample is None else self.downsample(x)
        return self.relu(out + shortcut)


def _make_layer(block, cin: int, planes: int, n: int) -> nn.SequentialCell:
    """`n` blocks run in order; only the first changes the width (and has the 1x1 shortcut)."""
    cout = planes * block.expansion
    return nn.SequentialCell([block(cin if k == 0 else cout, planes) for k in range(n)])


def _index(n: int, size: int) -> ms.Tensor:
    return ms.Tensor(nearest_source_index(n, size).astype(np.int32))


def resize_nearest(x: ms.Tensor, height: int, width: int) -> ms.Tensor:
    """(B, C, h, w) -> (B, C, height, width) with the Flax model's integer nearest rule.

    A gather of constant indices, not ops.ResizeNearestNeighbor, whose float32 index rule picks
    other rows for some sizes. Indices are built from static shapes (constants in GRAPH mode).
    """
    if x.shape[2] != height:
        x = ops.gather(x, _index(x.shape[2], height), 2)
    if x.shape[3] != width:
        x = ops.gather(x, _index(x.shape[3], width), 3)
    return x


class HighResolutionModule(nn.Cell):
    """Parallel branches of BasicBlocks, then every branch i sums all branches resampled to it.

    fuse_layers[i][j]: j > i: 1x1 conv + BN, then nearest upsample to branch i's size;
    j == i: identity; j < i: (i - j) stride-2 3x3 conv + BN, ReLU between them but not after.
    """

    def __init__(self, widths: tuple[int, ...], num_blocks: tuple[int, ...]):
        super().__init__()
        self.num_branches = len(widths)
        self.branches = nn.CellList(
            [_make_layer(BasicBlock, c, c, n) for c, n in zip(widths, num_blocks, strict=True)]
        )
        fuse = []
        for i, ci in enumerate(widths):
            row = []
            for j, cj in enumerate(widths):
                if j > i:
                    row.append(_conv_bn(cj, ci, 1, relu=False))
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = i - j
                    row.append(
                        nn.SequentialCell(
                            [
                                _conv_bn(
                                    cj,
                                    ci if k == steps - 1 else cj,
                                    3,
                                    stride=2,
                                    relu=k < steps - 1,
                                )
                                for k in range(steps)
                            ]
                        )
                    )
            fuse.append(nn.CellList(row))
        self.fuse_layers = nn.CellList(fuse)
        self.relu = nn.ReLU()

    def construct(self, xs):
        xs = [self.branches[b](xs[b]) for b in range(self.num_branches)]
        out = []
        for i in range(self.num_branches):
            height, width = xs[i].shape[2], xs[i].shape[3]
            y = self.fuse_layers[i][0](xs[0])  # j = 0 <= i: never an upsample
            for j in range(1, self.num_branches):
                t = self.fuse_layers[i][j](xs[j])
                if j > i:
                    t = resize_nearest(t, height, width)
                y = y + t
            out.append(self.relu(y))
        return out


def _make_transition(prev: tuple[int, ...], cur: tuple[int, ...]) -> nn.CellList:
    """Existing branches: identity (or 3x3 conv-BN-ReLU if the width changes); a new branch:
    stride-2 3x3 conv-BN-ReLU chain from the lowest-resolution branch (keys `.i.k.0/1`)."""
    out = []
    for i, c in enumerate(cur):
        if i < len(prev):
            out.append(nn.Identity() if prev[i] == c else _conv_bn(prev[i], c, 3, relu=True))
        else:
            n = i + 1 - len(prev)
            out.append(
                nn.SequentialCell(
                    [
                        _conv_bn(prev[-1], c if k == n - 1 else prev[-1], 3, stride=2, relu=True)
                        for k in range(n)
                    ]
                )
            )
    return nn.CellList(out)


class HRNet(layers.Classifier):
    """Stem (two stride-2 convs) -> layer1 -> 3 x (transition, stage) -> classification head."""

    def __init__(
        self, cfg: HRNetConfig, *, num_classes: int = 1000, drop_rate: float | None = None
    ):
        super().__init__()
        self.conv1 = _conv(3, STEM_WIDTH, 3, stride=2)
        self.bn1 = layers.batch_norm(STEM_WIDTH)
        self.conv2 = _conv(STEM_WIDTH, 64, 3, stride=2)
        self.bn2 = layers.batch_norm(64)
        self.relu = nn.ReLU()
        self.layer1 = _make_layer(Bottleneck, 64, cfg.stage1_planes, cfg.stage1_blocks)

        prev = (cfg.stage1_planes * Bottleneck.expansion,)
        num_prev = []  # branches entering each transition (static, for construct)
        for s, num_modules in enumerate(cfg.modules, start=2):
            widths = cfg.widths(s)
            setattr(self, f"transition{s - 1}", _make_transition(prev, widths))
            setattr(
                self,
                f"stage{s}",
                nn.SequentialCell(
                    [HighResolutionModule(widths, (cfg.blocks,) * s) for _ in range(num_modules)]
                ),
            )
            num_prev.append(len(prev))
            prev = widths
        self.num_prev = tuple(num_prev)

        head = [p * Bottleneck.expansion for p in HEAD_PLANES]
        self.incre_modules = nn.CellList(
            [_make_layer(Bottleneck, c, p, 1) for c, p in zip(prev, HEAD_PLANES, strict=True)]
        )
        self.downsamp_modules = nn.CellList(
            [_conv_bn(head[b], head[b + 1], 3, stride=2, bias=True, relu=True) for b in range(3)]
        )
        self.final_layer = _conv_bn(head[3], NUM_FEATURES, 1, bias=True, relu=True)
        self.global_pool = layers.GlobalAvgPool()
        self.num_classes, self.num_features = num_classes, NUM_FEATURES
        self.classifier = self._new_head(num_classes)
        self.head_drop = layers.dropout(drop_rate or 0.0)

    @staticmethod
    def _transition(transition: nn.CellList, xs: list, num_prev: int) -> list:
        # Existing branch i (identity or width change) reads branch i; a new one the last.
        return [
            transition[i](xs[i] if i < num_prev else xs[num_prev - 1])
            for i in range(len(transition))
        ]

    def _new_head(self, num_classes: int) -> nn.Cell:
        return layers.dense(NUM_FEATURES, num_classes, bias_init=layers.torch_bias(NUM_FEATURES))

    def _set_head(self, head: nn.Cell) -> None:
        self.classifier = head

    def feature_map(self, x):
        """(B, 3, H, W) -> (B, 2048, ceil(H/32), ceil(W/32)), before pooling."""
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.relu(self.bn2(self.conv2(x)))
        xs = [self.layer1(x)]
        xs = self.stage2(self._transition(self.transition1, xs, self.num_prev[0]))
        xs = self.stage3(self._transition(self.transition2, xs, self.num_prev[1]))
        xs = self.stage4(self._transition(self.transition3, xs, self.num_prev[2]))
        y = self.incre_modules[0](xs[0])
        for b in range(1, 4):
            y = self.incre_modules[b](xs[b]) + self.downsamp_modules[b - 1](y)
        return self.final_layer(y)

    def forward_features(self, x):
        """(B, 3, H, W) -> pooled (B, 2048)."""
        return self.global_pool(self.feature_map(x))

    def forward_head(self, features):
        return self.classifier(self.head_drop(features)).astype(ms.float32)


def build(name: str, *, num_classes: int = 1000, drop_rate: float | None = None) -> HRNet:
    """The cell for a registered HRNet variant (in training mode, like any new MindSpore cell)."""
    return HRNet(CONFIGS[name], num_classes=num_classes, drop_rate=drop_rate)

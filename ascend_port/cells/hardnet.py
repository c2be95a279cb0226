"""HarDNet cells (39ds, 68ds, 68, 85) mirroring models/hardnet.py attribute for attribute.

The architecture (widths, links, tables) comes from models/hardnet_arch.py, shared with the Flax
model, so parameter names such as `base.3.layers.0.conv.weight` equal the canonical
`base.3.layers.0.conv.kernel` up to the generic leaf rename of ascend_port.bridge.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops

from ascend_port.cells import layers
from models.hardnet_arch import CONFIGS, HarDNetConfig, block_output_layers, harmonic_layer


class ConvLayer(nn.Cell):
    """conv (no bias, k//2 padding) -> BN -> ReLU6; attributes `conv`, `norm`."""

    def __init__(self, cin: int, cout: int, kernel: int = 3, stride: int = 1):
        super().__init__()
        self.conv = layers.conv2d(cin, cout, kernel, stride=stride)
        self.norm = layers.batch_norm(cout)
        self.act = nn.ReLU6()

    def construct(self, x):
        return self.act(self.norm(self.conv(x)))


class DWConvLayer(nn.Cell):
    """depthwise 3x3 conv -> BN, no activation; attributes `dwconv`, `norm`."""

    def __init__(self, channels: int, stride: int = 1):
        super().__init__()
        self.dwconv = layers.conv2d(channels, channels, 3, stride=stride, groups=channels)
        self.norm = layers.batch_norm(channels)

    def construct(self, x):
        return self.norm(self.dwconv(x))


class CombConvLayer(nn.Cell):
    """1x1 ConvLayer then depthwise 3x3; attributes `layer1`, `layer2`."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.layer1 = ConvLayer(cin, cout, 1)
        self.layer2 = DWConvLayer(cout)

    def construct(self, x):
        return self.layer2(self.layer1(x))


class HarDBlock(nn.Cell):
    """Harmonic dense block; inputs concatenated nearest-first along channels (NCHW axis 1)."""

    def __init__(self, cin: int, growth: int, grmul: float, n_layers: int, *, depthwise: bool):
        super().__init__()
        specs = [harmonic_layer(k, cin, growth, grmul) for k in range(1, n_layers + 1)]
        self.links = tuple(s.links for s in specs)
        make = CombConvLayer if depthwise else ConvLayer
        self.layers = nn.CellList([make(s.in_channels, s.out_channels) for s in specs])
        self.outputs = tuple(block_output_layers(n_layers))
        self.out_channels = sum(specs[k - 1].out_channels for k in self.outputs)

    def construct(self, x):
        outs = [x]
        for i, layer in enumerate(self.layers):
            links = self.links[i]
            if len(links) == 1:
                inp = outs[links[0]]
            else:
                inp = ops.concat([outs[j] for j in links], 1)
            outs.append(layer(inp))
        return ops.concat([outs[k] for k in self.outputs], 1)


class HarDNet(layers.Classifier):
    """The official `base` list: stem, per stage block [, dropout], transition [, down], head."""

    def __init__(
        self, cfg: HarDNetConfig, *, num_classes: int = 1000, drop_rate: float | None = None
    ):
        super().__init__()
        drop_rate = cfg.drop_rate if drop_rate is None else drop_rate
        c0, c1 = cfg.first_ch
        base = [
            ConvLayer(3, c0, 3, stride=2),
            ConvLayer(c0, c1, 1 if cfg.depthwise else 3),
            DWConvLayer(c1, stride=2) if cfg.depthwise else layers.max_pool(3, 2, 1),
        ]
        ch = c1
        for i, (growth, n) in enumerate(zip(cfg.growth, cfg.n_layers, strict=True)):
            block = HarDBlock(ch, growth, cfg.grmul, n, depthwise=cfg.depthwise)
            base.append(block)
            if i == len(cfg.growth) - 1 and cfg.block_drop_rate:
                base.append(layers.dropout(cfg.block_drop_rate))
            base.append(ConvLayer(block.out_channels, cfg.ch_list[i], 1))
            ch = cfg.ch_list[i]
            if cfg.downsample[i]:
                base.append(DWConvLayer(ch, stride=2) if cfg.depthwise else layers.max_pool(2, 2))
        # The head's slots keep the Flax nnx.List names (`base.<head>.3.weight`).
        self.num_classes, self.num_features, self.head_index = num_classes, ch, len(base)
        head = nn.CellList(
            [
                layers.GlobalAvgPool(),
                nn.Flatten(),
                layers.dropout(drop_rate),
                self._new_head(num_classes),
            ]
        )
        base.append(head)
        self.base = nn.CellList(base)

    def _new_head(self, num_classes: int) -> nn.Cell:
        return layers.dense(self.num_features, num_classes)

    def _set_head(self, head: nn.Cell) -> None:
        self.base[self.head_index][3] = head

    def forward_features(self, x):
        for i in range(self.head_index):
            x = self.base[i](x)
        head = self.base[self.head_index]
        return head[1](head[0](x))

    def forward_head(self, features):
        head = self.base[self.head_index]
        return head[3](head[2](features)).astype(ms.float32)


def build(name: str, *, num_classes: int = 1000, drop_rate: float | None = None) -> HarDNet:
    """The cell for a registered HarDNet variant (in training mode, like any new MindSpore cell)."""
    return HarDNet(CONFIGS[name], num_classes=num_classes, drop_rate=drop_rate)

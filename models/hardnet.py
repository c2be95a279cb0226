"""HarDNet (Harmonic DenseNet, Chao et al., ICCV 2019): 39ds, 68ds, 68, 85.

Follows the authors' PyTorch code (PingoLH/Pytorch-HarDNet, hardnet.py) exactly; the module tree
mirrors its `base` list so official state dicts load with no rename table. The link rule and
widths are in models/hardnet_arch.py.
"""

from __future__ import annotations

import functools
import re

import jax
import jax.numpy as jnp
from flax import nnx

from models import layers
from models.hardnet_arch import (
    CONFIGS,
    HarDNetConfig,
    block_output_layers,
    harmonic_layer,
)
from models.registry import register


# --------------------------------------------------------------------------- layers
class ConvLayer(nnx.Module):
    """conv (no bias, k//2 padding) -> BN -> ReLU6; official keys `conv`, `norm`."""

    def __init__(self, cin, cout, kernel=3, stride=1, *, dtype, rngs):
        self.conv = layers.conv2d(cin, cout, kernel, stride=stride, dtype=dtype, rngs=rngs)
        self.norm = layers.batch_norm(cout, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return jax.nn.relu6(self.norm(self.conv(x)))


class DWConvLayer(nnx.Module):
    """depthwise 3x3 conv -> BN, no activation; official keys `dwconv`, `norm`."""

    def __init__(self, channels, stride=1, *, dtype, rngs):
        self.dwconv = layers.conv2d(
            channels, channels, 3, stride=stride, groups=channels, dtype=dtype, rngs=rngs
        )
        self.norm = layers.batch_norm(channels, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.norm(self.dwconv(x))


class CombConvLayer(nnx.Module):
    """1x1 ConvLayer then depthwise 3x3 (the ds models' block layer); keys `layer1`, `layer2`."""

    def __init__(self, cin, cout, *, dtype, rngs):
        self.layer1 = ConvLayer(cin, cout, 1, dtype=dtype, rngs=rngs)
        self.layer2 = DWConvLayer(cout, dtype=dtype, rngs=rngs)

    def __call__(self, x):
        return self.layer2(self.layer1(x))


class HarDBlock(nnx.Module):
    def __init__(self, cin, growth, grmul, n_layers, *, depthwise, dtype, rngs):
        specs = [harmonic_layer(k, cin, growth, grmul) for k in range(1, n_layers + 1)]
        self.links = tuple(s.links for s in specs)
        make = functools.partial(CombConvLayer if depthwise else ConvLayer, dtype=dtype, rngs=rngs)
        self.layers = nnx.List([make(s.in_channels, s.out_channels) for s in specs])
        self.outputs = tuple(block_output_layers(n_layers))
        self.out_channels = sum(specs[k - 1].out_channels for k in self.outputs)

    def __call__(self, x):
        outs = [x]
        for links, layer in zip(self.links, self.layers, strict=True):
            # Concatenate nearest-first, as the official code does; the order fixes the meaning
            # of the next conv's input channels.
            inp = (
                outs[links[0]] if len(links) == 1 else jnp.concatenate([outs[j] for j in links], -1)
            )
            outs.append(layer(inp))
        return jnp.concatenate([outs[k] for k in self.outputs], axis=-1)


# --------------------------------------------------------------------------- network
class HarDNet(layers.Classifier):
    """The official `base` list: stem, then per stage block [, dropout], transition [, down], head.

    `self.units` records, per stage, the `base` indices of its block, transition and downsampler;
    the pytorchcv rename rules are derived from it.
    """

    def __init__(
        self,
        cfg: HarDNetConfig,
        *,
        num_classes=1000,
        drop_rate=None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=layers.ParamKeys(rngs))
        drop_rate = cfg.drop_rate if drop_rate is None else drop_rate
        c0, c1 = cfg.first_ch
        base = [
            ConvLayer(3, c0, 3, stride=2, **kw),
            ConvLayer(c0, c1, 1 if cfg.depthwise else 3, **kw),
            DWConvLayer(c1, stride=2, **kw) if cfg.depthwise else layers.MaxPool(3, 2, 1),
        ]
        ch, units = c1, []
        for i, (growth, n) in enumerate(zip(cfg.growth, cfg.n_layers, strict=True)):
            block = HarDBlock(ch, growth, cfg.grmul, n, depthwise=cfg.depthwise, **kw)
            unit = {"block": len(base)}
            base.append(block)
            if i == len(cfg.growth) - 1 and cfg.block_drop_rate:
                base.append(nnx.Dropout(cfg.block_drop_rate, rngs=rngs))
            unit["transition"] = len(base)
            base.append(ConvLayer(block.out_channels, cfg.ch_list[i], 1, **kw))
            ch = cfg.ch_list[i]
            if cfg.downsample[i]:
                unit["downsample"] = len(base)
                base.append(
                    DWConvLayer(ch, stride=2, **kw) if cfg.depthwise else layers.MaxPool(2, 2)
                )
            units.append(unit)
        self.head_index = len(base)
        self.num_classes, self.num_features, self.dtype = num_classes, ch, dtype
        base.append(
            nnx.List(
                [
                    layers.GlobalAvgPool(),
                    layers.Flatten(),
                    nnx.Dropout(drop_rate, rngs=rngs),
                    self._classifier(num_classes, kw["rngs"]),
                ]
            )
        )
        self.base = nnx.List(base)
        self.units = tuple(units)

    def _classifier(self, num_classes: int, rngs) -> nnx.Linear:
        return layers.linear(
            self.num_features,
            num_classes,
            kernel_init=layers.torch_default_init,
            dtype=self.dtype,
            rngs=rngs,
        )

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, H, W, 3) -> pooled (B, num_features)."""
        for layer in self.base[:-1]:
            x = layer(x)
        pool, flatten = self.base[-1][0], self.base[-1][1]
        return flatten(pool(x))

    def forward_head(self, features: jax.Array) -> jax.Array:
        dropout, classifier = self.base[-1][2], self.base[-1][3]
        return classifier(dropout(features)).astype(jnp.float32)

    def reset_classifier(self, num_classes: int, *, rngs: nnx.Rngs | None = None) -> None:
        """A fresh Linear head (PyTorch's default init, as the authors' code builds it)."""
        self.base[-1][3] = self._classifier(num_classes, rngs or nnx.Rngs(0))
        self.num_classes = num_classes


# --------------------------------------------------------------------------- PyTorch naming
def torch_namings() -> tuple[str, ...]:
    return ("official", "pytorchcv")


def detect_torch_naming(keys: list[str]) -> str:
    if any(k.startswith("features.") for k in keys):
        return "pytorchcv"
    return "official"


@functools.cache
def _structure(variant: str) -> tuple[tuple[dict, ...], int]:
    """(per-stage `base` indices, head index), from an abstract model (no arrays allocated)."""
    model = nnx.eval_shape(lambda: _build(variant, num_classes=1, rngs=nnx.Rngs(0)))
    return model.units, model.head_index


_CV_UNIT = re.compile(r"^features\.stage(\d+)\.unit(\d+)\.(.*)$")
_CV_LEAF = {"conv": "conv", "bn": "norm"}


def rename_torch_key(variant: str, module_path: str, naming: str) -> str:
    """Maps a PyTorch module path of the given naming to our (official) module path."""
    if naming == "official":
        return module_path
    if naming != "pytorchcv":
        raise ValueError(f"unknown HarDNet naming {naming!r}; known: {torch_namings()}")
    cfg = CONFIGS[variant]
    units, head_index = _structure(variant)
    parts = module_path.split(".")
    if module_path == "output.fc":
        return f"base.{head_index}.3"
    if parts[:2] == ["features", "init_block"]:
        index = {"conv1": 0, "conv2": 1, "downsample": 2}[parts[2]]
        return f"base.{index}.{_cv_conv_bn(parts[3], dw=parts[2] == 'downsample')}"
    match = _CV_UNIT.match(module_path)
    if not match:
        raise ValueError(f"unexpected pytorchcv HarDNet key {module_path!r}")
    stage, unit, rest = int(match[1]), int(match[2]), match[3].split(".")
    unit_index = _pytorchcv_unit_order(variant).index((stage, unit))
    u = units[unit_index]
    if rest[0] == "blocks":  # blocks.block{k}.(conv|bn) or .(pw_conv|dw_conv).(conv|bn)
        layer = int(rest[1][len("block") :]) - 1
        prefix = f"base.{u['block']}.layers.{layer}"
        if cfg.depthwise:
            sub = {"pw_conv": "layer1", "dw_conv": "layer2"}[rest[2]]
            return f"{prefix}.{sub}.{_cv_conv_bn(rest[3], dw=sub == 'layer2')}"
        return f"{prefix}.{_cv_conv_bn(rest[2])}"
    if rest[0] == "conv":
        return f"base.{u['transition']}.{_cv_conv_bn(rest[1])}"
    if rest[0] == "downsample":
        return f"base.{u['downsample']}.{_cv_conv_bn(rest[1], dw=True)}"
    raise ValueError(f"unexpected pytorchcv HarDNet key {module_path!r}")


def _cv_conv_bn(leaf: str, dw: bool = False) -> str:
    if leaf == "conv":
        return "dwconv" if dw else "conv"
    return _CV_LEAF[leaf]


@functools.cache
def _pytorchcv_unit_order(variant: str) -> list[tuple[int, int]]:
    """pytorchcv groups units into stages that end at each downsampling unit."""
    order, stage, unit = [], 1, 0
    for down in CONFIGS[variant].downsample:
        unit += 1
        order.append((stage, unit))
        if down:
            stage, unit = stage + 1, 0
    return order


# --------------------------------------------------------------------------- registry
def _build(variant, *, num_classes=1000, dtype=jnp.float32, rngs, drop_rate=None):
    return HarDNet(
        CONFIGS[variant], num_classes=num_classes, drop_rate=drop_rate, dtype=dtype, rngs=rngs
    )


for _name in CONFIGS:
    register(_name, functools.partial(_build, _name))

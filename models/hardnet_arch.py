"""HarDNet architecture tables and the harmonic link rule, framework-free.

Shared by the Flax model (models/hardnet.py) and the MindSpore cell (ascend_port), so it imports
neither jax nor mindspore.
"""

from __future__ import annotations

import dataclasses
import functools


@dataclasses.dataclass(frozen=True)
class HarmonicLayer:
    links: tuple[int, ...]  # earlier layers it reads, nearest first (k-1, k-2, k-4, ...)
    in_channels: int
    out_channels: int


@functools.cache
def harmonic_layer(k: int, base_channels: int, growth: int, grmul: float) -> HarmonicLayer:
    """Layer k of a HarDBlock (layer 0 = block input): links and widths, as the official code.

    Layer k reads every layer k - 2^i for which 2^i divides k; its width is growth * grmul^(links-1)
    rounded to even the way the authors do: 2 * floor(floor(w + 1) / 2).
    """
    if k == 0:
        return HarmonicLayer((), 0, base_channels)
    links, width = [], float(growth)
    for i in range(10):
        step = 2**i
        if k % step == 0 and k - step >= 0:
            links.append(k - step)
            if i > 0:
                width *= grmul
    out_channels = int(int(width + 1) / 2) * 2
    in_channels = sum(harmonic_layer(j, base_channels, growth, grmul).out_channels for j in links)
    return HarmonicLayer(tuple(links), in_channels, out_channels)


def block_output_layers(n_layers: int) -> list[int]:
    """Layers concatenated as the block output: every odd layer and the last (never the input)."""
    return [k for k in range(1, n_layers + 1) if k % 2 == 1 or k == n_layers]


@dataclasses.dataclass(frozen=True)
class HarDNetConfig:
    first_ch: tuple[int, int]
    ch_list: tuple[int, ...]
    growth: tuple[int, ...]
    n_layers: tuple[int, ...]
    downsample: tuple[int, ...]
    grmul: float = 1.7
    depthwise: bool = False
    drop_rate: float = 0.1  # before the classifier
    block_drop_rate: float = 0.0  # HarDNet85 only: Dropout(0.1) before the last transition


_HARDNET68 = HarDNetConfig(
    (32, 64),
    (128, 256, 320, 640, 1024),
    (14, 16, 20, 40, 160),
    (8, 16, 16, 16, 4),
    (1, 0, 1, 1, 0),
    drop_rate=0.1,
)

CONFIGS = {
    "hardnet39ds": HarDNetConfig(
        (24, 48),
        (96, 320, 640, 1024),
        (16, 20, 64, 160),
        (4, 16, 8, 4),
        (1, 1, 1, 0),
        grmul=1.6,
        depthwise=True,
        drop_rate=0.05,
    ),
    # The authors' depth_wise=True build of the same arch=68 tables (depthwise blocks and
    # downsampling, drop_rate 0.05).
    "hardnet68ds": dataclasses.replace(_HARDNET68, depthwise=True, drop_rate=0.05),
    "hardnet68": _HARDNET68,
    "hardnet85": HarDNetConfig(
        (48, 96),
        (192, 256, 320, 480, 720, 1280),
        (24, 24, 28, 36, 48, 256),
        (8, 16, 16, 16, 16, 4),
        (1, 0, 1, 0, 1, 0),
        drop_rate=0.2,
        block_drop_rate=0.1,
    ),
}

"""HLG architecture tables and position-bias offsets, framework-free.

Shared by the Flax models (models/hlg.py: the official HLG; models/hlg_zoo.py: the MindSpore
model zoo's HLG-mobile) and the MindSpore cells (ascend_port/cells/hlg.py, hlg_zoo.py), so it
imports neither jax nor mindspore.
"""

from __future__ import annotations

import dataclasses
import functools

import numpy as np

# --------------------------------------------------------------------------- official HLG (A)
WINDOW = 7  # local windows are always 7x7
INPUT_SIZE = 224  # the global-bias quirk and the 7x7 stage-4 bias only fit 224x224 inputs
LN_EPS = 1e-6  # the registry's partial(nn.LayerNorm, eps=1e-6)
DPB_LN_EPS = 1e-5  # DynamicPosBias builds plain nn.LayerNorm


@functools.cache
def grid_offsets(n: int) -> np.ndarray:
    """(n^4, 2) offsets [r_i - r_j, c_i - c_j] of an n x n grid, rows i-major (local and stage 4)."""
    r, c = np.divmod(np.arange(n * n), n)
    off = np.stack([r[:, None] - r[None, :], c[:, None] - c[None, :]], axis=-1)
    return off.reshape(-1, 2).astype(np.float32)


@functools.cache
def global_offsets(height: int, width: int, window: int = WINDOW) -> np.ndarray:
    """(H*W * nWin, 2) offsets of the global bias, copying the official quirk.

    The official code builds the relative-position table of the H x H grid and keeps its first
    (H/7)^2 columns, so window token m is placed at pixel divmod(m, H), not at its window's
    position; query i sits at divmod(i, H). Only square maps reach it (224 input).
    """
    if height != width:
        raise ValueError(f"the HLG global position bias needs a square map, got {height}x{width}")
    num_windows = (height // window) * (width // window)
    ri, ci = np.divmod(np.arange(height * width), height)
    rm, cm = np.divmod(np.arange(num_windows), height)
    off = np.stack([ri[:, None] - rm[None, :], ci[:, None] - cm[None, :]], axis=-1)
    return off.reshape(-1, 2).astype(np.float32)


def drop_path_rates(rate: float, num_blocks: int) -> list[float]:
    """Each block's stochastic-depth rate in build order: linear from 0 to `rate` (Swin, timm)."""
    return np.linspace(0.0, rate, num_blocks).tolist()


@dataclasses.dataclass(frozen=True)
class HLGConfig:
    dims: tuple[int, int, int, int]
    heads: tuple[int, int, int, int]
    depths: tuple[int, int, int, int]
    drop_path_rate: float  # the rate the official recipe trains this variant with
    # How a 7x7 window becomes its global token: "mean" (the official "avgpool") or "dwconv"
    # (a depthwise 7x7 stride-7 conv with bias, `h0_conv`, in every block of stages 1-3).
    window_tokens: str = "mean"

    def block_drop_path_rates(self, rate: float | None = None) -> list[float]:
        """Per block in build order; `rate`, when given, replaces this config's drop_path_rate."""
        return drop_path_rates(self.drop_path_rate if rate is None else rate, sum(self.depths))


CONFIGS = {
    # mobile has no yaml: the official config.py default drop path (0.1) applies.
    "hlg_mobile": HLGConfig((32, 64, 192, 384), (2, 4, 6, 12), (2, 2, 2, 2), 0.1),
    "hlg_tiny": HLGConfig((64, 128, 256, 512), (2, 4, 8, 16), (2, 2, 6, 2), 0.2),
    # The official file's hlg_tiny_dwconv; no yaml, so config.py's default drop path applies.
    "hlg_tiny_dwconv": HLGConfig((64, 128, 256, 512), (2, 4, 8, 16), (2, 2, 6, 2), 0.1, "dwconv"),
    "hlg_small": HLGConfig((96, 192, 384, 768), (3, 6, 12, 24), (2, 2, 6, 2), 0.2),
    "hlg_medium": HLGConfig((96, 192, 384, 768), (3, 6, 12, 24), (2, 2, 14, 2), 0.2),
    "hlg_large": HLGConfig((128, 256, 512, 1024), (4, 8, 16, 32), (2, 2, 14, 2), 0.2),
}

# --------------------------------------------------------------------------- zoo HLG-mobile (B)
ZOO_NAME = "hlg_mobile_zoo"
ZOO_INPUT_SIZE = 224  # the position embeddings are built for 56/28/14/7 maps
ZOO_LN_EPS = 1e-7  # MindSpore nn.LayerNorm default
ZOO_D_MODEL = (32, 64, 192, 384)
ZOO_HEADS = (2, 4, 8, 16)
ZOO_DIM_HEAD = (16, 16, 24, 24)
ZOO_MLP_RATIOS = (8, 8, 4, 4)
ZOO_FEATURE_SIZES = (56, 28, 14, 7)
ZOO_DROP_PATH_RATE = 0.1  # HLGConfig.body_drop_path_rate
ZOO_NUM_CLASSES = 1001  # the zoo's class_num


def zoo_drop_path_rates(rate: float | None = None) -> list[float]:
    """The zoo build's per-block rates (two blocks a stage); `rate` replaces its default."""
    return drop_path_rates(ZOO_DROP_PATH_RATE if rate is None else rate, 2 * len(ZOO_D_MODEL))


# timm's `no_weight_decay` for both HLG builds: parameters (matched per dotted-name segment) that
# a transformer recipe leaves undecayed, besides norms and biases. Only the zoo build has them
# (absolute position embeddings pos_embed1..4 and the cls token); the official build's position
# encodings are conv/linear layers (pos_global / pos_local) whose kernels are decayed.
NO_WEIGHT_DECAY = (r"pos_embed\d*", r"cls", r"cls_token")

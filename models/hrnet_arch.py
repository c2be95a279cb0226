"""HRNet-classification architecture tables and the fuse-upsample index rule, framework-free.

Shared by the Flax model (models/hrnet.py) and the MindSpore cell (ascend_port/cells/hrnet.py),
so it imports neither jax nor mindspore. Tables: the official
experiments/cls_hrnet_*.yaml files (timm copies them).
"""

from __future__ import annotations

import dataclasses

import numpy as np

HEAD_PLANES = (32, 64, 128, 256)  # incre_modules Bottleneck planes -> 128, 256, 512, 1024 ch
NUM_FEATURES = 2048  # final_layer width, the classifier input
STEM_WIDTH = 64


@dataclasses.dataclass(frozen=True)
class HRNetConfig:
    width: int  # C: branch widths are C, 2C, 4C, 8C
    stage1_blocks: int  # Bottlenecks in layer1
    stage1_planes: int  # their planes (output 4x)
    modules: tuple[int, int, int]  # HighResolutionModules in stages 2, 3, 4
    blocks: int  # BasicBlocks per branch in every module of stages 2-4

    def widths(self, branches: int) -> tuple[int, ...]:
        return tuple(self.width * 2**b for b in range(branches))


_FULL = dict(stage1_blocks=4, stage1_planes=64, modules=(1, 4, 3), blocks=4)
CONFIGS = {
    "hrnet_w18_small": HRNetConfig(
        16, stage1_blocks=1, stage1_planes=32, modules=(1, 1, 1), blocks=2
    ),
    "hrnet_w18_small_v2": HRNetConfig(
        18, stage1_blocks=2, stage1_planes=64, modules=(1, 3, 2), blocks=2
    ),
    **{f"hrnet_w{w}": HRNetConfig(w, **_FULL) for w in (18, 30, 32, 40, 44, 48, 64)},
}


def nearest_source_index(n: int, size: int) -> np.ndarray:
    """Source rows of a nearest resize from n to `size`: floor(dst * n / size), in integers.

    PyTorch's 'nearest' rule. Why integers: MindSpore's ResizeNearestNeighbor computes the
    same rule in float32 and picks another row for some sizes (e.g. 16 -> 122, a branch of a
    ~488 px input), so the cell gathers these indices instead.
    """
    return (np.arange(size, dtype=np.int64) * n) // size

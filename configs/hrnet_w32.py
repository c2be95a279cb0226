"""HRNet-W32 (timm `hrnet_w32`): the official recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w32.py --workdir runs/w32

Published ImageNet-1k top-1: 78.5% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w32")

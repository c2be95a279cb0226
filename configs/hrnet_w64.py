"""HRNet-W64 (timm `hrnet_w64`): the official recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w64.py --workdir runs/w64

Published ImageNet-1k top-1: 79.5% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w64")

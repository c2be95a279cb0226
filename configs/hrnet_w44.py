"""HRNet-W44 (timm `hrnet_w44`): the official recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w44.py --workdir runs/w44

Published ImageNet-1k top-1: 78.9% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w44")

"""HRNet-W18-Small v2 (timm `hrnet_w18_small_v2`): the official recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w18_small_v2.py --workdir runs/w18_small_v2

Published ImageNet-1k top-1: 75.1% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w18_small_v2")

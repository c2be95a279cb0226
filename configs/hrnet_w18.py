"""HRNet-W18 (timm `hrnet_w18`): the official recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w18.py --workdir runs/w18

Published ImageNet-1k top-1: 76.8% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w18")

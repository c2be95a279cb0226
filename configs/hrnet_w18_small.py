"""HRNet-W18-Small v1 (timm `hrnet_w18_small`; 16 wide despite the name): the official
recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w18_small.py --workdir runs/w18_small

Published ImageNet-1k top-1: 72.3% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w18_small")

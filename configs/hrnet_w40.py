"""HRNet-W40 (timm `hrnet_w40`): the official recipe (configs/hrnet_common.py).

    python main.py --config configs/hrnet_w40.py --workdir runs/w40

Published ImageNet-1k top-1: 78.9% (official README).
"""

from ml_collections import ConfigDict

from configs import hrnet_common


def get_config() -> ConfigDict:
    return hrnet_common.official("hrnet_w40")

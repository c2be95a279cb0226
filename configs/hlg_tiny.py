"""HLG-Tiny (official HLG, SETR hlg-classification) on ImageNet-1k with the paper recipe.

    python main.py --config configs/hlg_tiny.py --workdir runs/hlg_tiny

Published top-1: 81.1 (SETR README, 224x224). Recipe: configs/hlg_common.py.
"""

from ml_collections import ConfigDict

from configs.hlg_common import paper_recipe


def get_config() -> ConfigDict:
    return paper_recipe("hlg_tiny")

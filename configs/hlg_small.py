"""HLG-Small (official HLG, SETR hlg-classification) on ImageNet-1k with the paper recipe.

    python main.py --config configs/hlg_small.py --workdir runs/hlg_small

Published top-1: 82.3 (SETR README, 224x224). Recipe: configs/hlg_common.py.
"""

from ml_collections import ConfigDict

from configs.hlg_common import paper_recipe


def get_config() -> ConfigDict:
    return paper_recipe("hlg_small")

"""HRNet-W64 (timm `hrnet_w64`): the official recipe.

    python main.py --config configs/hrnet_w64.py --workdir runs/w64

SGD Nesterov momentum 0.9, lr 0.05 at batch 128, weight decay 1e-4, x0.1 at epochs 30/60/90,
100 epochs. Published ImageNet-1k top-1: 79.5% (official README). Recipe source:
HRNet/HRNet-Image-Classification ships yamls up to W48 only; W64 uses their shared TRAIN section
(configs/hrnet_common.py). That is our assumption, not a published W64 file.
"""

from ml_collections import ConfigDict

from configs import base, hrnet_common


def get_config() -> ConfigDict:
    c = base.get_config()
    return hrnet_common.official_recipe(c, "hrnet_w64")

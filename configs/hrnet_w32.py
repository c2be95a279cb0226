"""HRNet-W32 (timm `hrnet_w32`): the official recipe.

    python main.py --config configs/hrnet_w32.py --workdir runs/w32

SGD Nesterov momentum 0.9, lr 0.05 at batch 128, weight decay 1e-4, x0.1 at epochs 30/60/90,
100 epochs. Published ImageNet-1k top-1: 78.5% (official README). Recipe source:
HRNet/HRNet-Image-Classification
experiments/cls_hrnet_w32_sgd_lr5e-2_wd1e-4_bs32_x100.yaml, applied by configs/hrnet_common.py.
"""

from ml_collections import ConfigDict

from configs import base, hrnet_common


def get_config() -> ConfigDict:
    c = base.get_config()
    return hrnet_common.official_recipe(c, "hrnet_w32")

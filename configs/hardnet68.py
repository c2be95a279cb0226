"""HarDNet-68 on ImageNet-1k with the authors' recipe (published top-1 76.5%).

    python main.py --config configs/hardnet68.py --workdir runs/hardnet68

Data: TFDS imagenet2012 (put ILSVRC2012_img_{train,val}.tar in the TFDS manual dir), or
--config.data.source=folder:/data/imagenet for an ImageFolder tree (train/<class>, val/<class>).
"""

from configs import hardnet_common


def get_config():
    return hardnet_common.official("hardnet68")

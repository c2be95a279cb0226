"""HarDNet-68ds on ImageNet-1k with the authors' recipe (published top-1 74.3%).

    python main.py --config configs/hardnet68ds.py --workdir runs/hardnet68ds

Data: TFDS imagenet2012 (put ILSVRC2012_img_{train,val}.tar in the TFDS manual dir), or
--config.data.source=folder:/data/imagenet for an ImageFolder tree (train/<class>, val/<class>).
"""

from configs import hardnet_common


def get_config():
    return hardnet_common.official("hardnet68ds")

"""HLG-mobile of the MindSpore model zoo (research/cv/hlg) on ImageNet with the zoo's seed recipe.

    python main.py --config configs/hlg_mobile_zoo.py --workdir runs/hlg_mobile_zoo

Published top-1: 75.6 (README_CN: 75.61 best during training, 75.48 in a separate eval).
Recipe (config/hlg_config.yml, src/): 1001 classes, 8 x 128 images, AdamW lr 1e-3 after a
20-epoch linear warmup from 0, then cosine to 0 (the zoo's cosine ignores lr_min) over 300
epochs (the zoo counts steps from 1), weight decay 0.05, label smoothing 0.1 on mixup (alpha 0.2)
targets, random-resized crop from 5% area, AutoAugment ImageNet policy, bilinear. Differences: the zoo decays LN/BN gammas,
position embeddings and cls (everything but names with 'beta'/'bias'); here norm scales,
position embeddings and cls are not (timm's rule, train_lib/recipes/weight_decay.py). It trains in fp16
(AMP O3, fixed loss scale 1024: ascend.loss_scale_mode='fixed' below). With mixup the zoo's loss
(CrossEntropySmoothMixup) spreads a / (K - 2) over the classes not in the mix.
"""

from ml_collections import ConfigDict

from configs import base


def get_config() -> ConfigDict:
    c = base.get_config()
    c.model.name = "hlg_mobile_zoo"
    c.model.num_classes = 1001  # class_num: ImageFolder labels 0..999, one logit never a target
    c.model.drop_path_rate = 0.1  # HLGConfig.body_drop_path_rate

    c.data.image_size = 224  # the model takes 224x224 only
    c.data.crop_pct = 0.875  # eval: resize 256, center crop 224
    c.data.interpolation = "bilinear"
    c.data.crop_min = 0.05
    c.data.auto_augment = "imagenet"
    c.data.mixup = 0.2

    c.train.batch_size = 1024  # global
    c.train.epochs = 300
    c.train.label_smoothing = 0.1
    c.train.label_smoothing_mode = "others"  # src/cross_entropy.py: off-label a / (K - 1)

    c.optim.name = "adamw"
    c.optim.weight_decay = 0.05
    c.optim.decay_norm_and_bias = False
    c.optim.adam_b1 = 0.9
    c.optim.adam_b2 = 0.999
    c.optim.adam_eps = 1e-8

    c.schedule.name = "cosine"
    c.schedule.reference_batch_size = 1024  # 128 per device x 8: 1251 steps per epoch
    c.schedule.first_step = 1  # src/lr_generator.py counts warmup and cosine from i + 1
    c.schedule.lr_max = 1e-3
    c.schedule.lr_init = 0.0
    c.schedule.lr_end = 0.0
    c.schedule.warmup_epochs = 20.0
    # MindSpore side: Model(amp_level='O3') with FixedLossScaleManager(1024), as the zoo.
    c.ascend.amp_level = "O3"
    c.ascend.loss_scale = 1024.0
    c.ascend.loss_scale_mode = "fixed"
    return c

"""The HLG paper recipe (SETR hlg-classification config.py + yaml), shared by hlg_tiny..hlg_large.

Swin-derived: AdamW, lr 5e-4 / warmup 5e-7 / min 5e-6 for every 512 images, 20 warmup epochs then
cosine over 300 epochs, weight decay 0.05, gradient clipping 5.0, label smoothing 0.1, mixup 0.8 +
cutmix 1.0, RandAugment rand-m9-mstd0.5-inc1, random erasing 0.25, bicubic, drop path 0.2,
and DeiT's model EMA 0.99996 (timm's ModelEma: every optimizer step, no warmup; both rows are
evaluated, --config.export_ema exports the average). Swin's COLOR_JITTER 0.4 is inert: timm's
create_transform applies colour jitter only without auto_augment, so it is 0 here. The
no-weight-decay list is unpublished; Swin's rule (no decay on 1-D params and biases) is
decay_norm_and_bias=False.
"""

from ml_collections import ConfigDict

from configs import base


def paper_recipe(model_name: str) -> ConfigDict:
    """The full config for one official HLG variant trained with the paper recipe."""
    c = base.get_config()
    c.model.name = model_name
    c.model.num_classes = 1000
    c.model.drop_path_rate = 0.2  # configs/hlg/hlg_*_224.yaml

    c.data.image_size = 224  # the model takes 224x224 only
    c.data.crop_pct = 0.875
    c.data.interpolation = "bicubic"
    c.data.auto_augment = "rand-m9-mstd0.5-inc1"
    c.data.color_jitter = 0.0  # Swin's 0.4, unused by timm next to RandAugment
    c.data.mixup = 0.8
    c.data.cutmix = 1.0
    c.data.random_erase = 0.25

    c.train.batch_size = 1024  # global
    c.train.epochs = 300
    c.train.label_smoothing = 0.1
    c.train.label_smoothing_mode = "uniform"  # timm's LabelSmoothingCrossEntropy: a / K
    c.train.grad_clip_norm = 5.0
    c.train.ema_decay = 0.99996  # DeiT's --model-ema-decay, which the HLG paper follows

    c.optim.name = "adamw"
    c.optim.weight_decay = 0.05
    c.optim.decay_norm_and_bias = False
    c.optim.adam_b1 = 0.9
    c.optim.adam_b2 = 0.999
    c.optim.adam_eps = 1e-8

    c.schedule.name = "cosine"
    c.schedule.reference_batch_size = 512  # main.py scales all three lrs by batch / 512
    c.schedule.lr_max = 5e-4
    c.schedule.lr_init = 5e-7
    c.schedule.lr_end = 5e-6
    c.schedule.warmup_epochs = 20.0
    return c

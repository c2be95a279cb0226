"""The official HRNet-cls recipe, shared by the per-variant configs (one place, not nine copies).

SGD Nesterov momentum 0.9, lr 0.05 at batch 128 (32 per GPU x 4), weight decay 1e-4 on every
parameter, x0.1 at epochs 30/60/90, 100 epochs, no label smoothing; random-resized crop 224 +
flip, eval resize 256 -> centre crop 224, bilinear.

Source: HRNet/HRNet-Image-Classification @ f760c98,
experiments/cls_hrnet_<variant>_sgd_lr5e-2_wd1e-4_bs32_x100.yaml (identical TRAIN section for every
variant; W18-Small's file is named w18_small_v1), lib/utils/utils.py (SGD over all parameters, so
weight decay includes BatchNorm and biases) and tools/train.py (RandomResizedCrop 224 + flip; eval
resize 256, centre crop 224). The repository ships yamls up to W48 only: W64 takes their shared
TRAIN section, our assumption rather than a published W64 file.
Imports only ml_collections (via base), so the MindSpore side can read it too.
"""

from ml_collections import ConfigDict

from configs import base


def official(model_name: str) -> ConfigDict:
    """The full config for `model_name` trained with the official recipe."""
    return official_recipe(base.get_config(), model_name)


def official_recipe(c: ConfigDict, model_name: str) -> ConfigDict:
    """Applies the official recipe to a base config for `model_name`; returns it."""
    c.model.name = model_name
    c.data.interpolation = "bilinear"  # timm's pretrained cfg for the official weights
    c.data.crop_pct = 0.875  # resize 256 -> centre crop 224
    c.train.batch_size = 128  # 32 per GPU x 4 GPUs
    c.train.epochs = 100
    c.train.label_smoothing = 0.0
    c.optim.name = "sgd"
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.weight_decay = 1e-4
    c.optim.decay_norm_and_bias = True  # torch SGD(weight_decay=...) over every parameter
    c.schedule.name = "step"
    c.schedule.lr_max = 0.05
    c.schedule.reference_batch_size = 128
    c.schedule.warmup_epochs = 0.0
    c.schedule.boundaries_epochs = (30, 60, 90)
    c.schedule.decay_factor = 0.1
    return c

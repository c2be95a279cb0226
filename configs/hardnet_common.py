"""The two HarDNet recipes: the authors' (PingoLH/Pytorch-HarDNet main.py) and the MindSpore
model zoo's (research/cv/hardnet)."""

from ml_collections import ConfigDict

from configs import base


def official(model: str) -> ConfigDict:
    """SGD nesterov 0.9, lr 0.05 at batch 256, cosine per step to 0, no warmup, wd 6e-5 on every
    parameter, no label smoothing, 150 epochs; eval resize 256 -> centre crop 224."""
    c = base.get_config()
    c.model.name = model
    c.train.batch_size = 256
    c.train.epochs = 150
    c.optim.name = "sgd"
    c.optim.momentum = 0.9
    c.optim.nesterov = True
    c.optim.weight_decay = 6e-5
    c.optim.decay_norm_and_bias = True
    c.schedule.name = "cosine"
    c.schedule.lr_max = 0.05
    c.schedule.lr_end = 0.0
    c.schedule.warmup_epochs = 0.0
    c.schedule.reference_batch_size = 256
    return c

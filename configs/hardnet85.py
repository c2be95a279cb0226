"""HarDNet-85 on ImageNet-1k with the MindSpore model-zoo recipe (research/cv/hardnet; published
top-1 78.0% for the authors' weights, 77.4-78.0% reported by the zoo after 150 epochs).

    python main.py --config configs/hardnet85.py --workdir runs/hardnet85

Global batch 256, SGD momentum 0.9 (no Nesterov), weight decay 6e-5 not applied to BatchNorm
scales/biases and biases, 150 epochs, linear warmup over 5 epochs from 0.05 to lr_max 0.1, then
cosine to lr_end 1e-5, label smoothing 0.1. (The zoo ran 256 per device on 8 Ascend 910; its
scripts start from converted official weights by default.)
"""

from configs import hardnet_common


def get_config():
    c = hardnet_common.official("hardnet85")
    c.optim.nesterov = False
    c.optim.decay_norm_and_bias = False
    c.schedule.lr_init = 0.05
    c.schedule.lr_max = 0.1
    c.schedule.lr_end = 1e-5
    c.schedule.warmup_epochs = 5.0
    c.train.label_smoothing = 0.1
    return c

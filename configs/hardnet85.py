"""HarDNet-85 on ImageNet-1k with the MindSpore model-zoo recipe (research/cv/hardnet; published
top-1 78.0% for the authors' weights, 77.4-78.0% reported by the zoo after 150 epochs).

    python main.py --config configs/hardnet85.py --workdir runs/hardnet85

The zoo ran 256 per device on 8 Ascend 910: a global batch of 2048, 625 steps per epoch, so this
config's lrs are for batch 2048 and scale linearly from there (--config.train.batch_size=256 gives
lr_max 0.0125, the same lr per image). SGD momentum 0.9 (no Nesterov), weight decay 6e-5 not
applied to BatchNorm scales/biases and biases, 150 epochs. Schedule (src/lr_scheduler.py, mode
'cosine'): linear warmup over 5 epochs from 0.05 to lr_max 0.1, counted from 1, then
lr_max * (T - i) / D * 0.5 * (1 + cos(0.94 * pi * i / D)) + 1e-6 (the zoo's 0.00001 * lr_max;
its lr_end 1e-5 is unused). Label smoothing 0.1 as the zoo defines it (a / (K - 1) off-label).
Its scripts start from converted official weights by default.
"""

from configs import hardnet_common


def get_config():
    c = hardnet_common.official("hardnet85")
    c.train.batch_size = 2048  # 256 per device x 8
    c.optim.nesterov = False
    c.optim.decay_norm_and_bias = False  # the zoo's filter: no 'beta', 'gamma', 'bias' names
    c.schedule.name = "zoo_cosine"
    c.schedule.reference_batch_size = 2048
    c.schedule.first_step = 1
    c.schedule.lr_init = 0.05
    c.schedule.lr_max = 0.1
    c.schedule.lr_end = 0.1 * 1e-5
    c.schedule.warmup_epochs = 5.0
    c.train.label_smoothing = 0.1
    c.train.label_smoothing_mode = "others"  # src/EntropyLoss.py CrossEntropySmooth
    return c

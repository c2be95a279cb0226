"""Label-smoothed softmax cross-entropy with optax.smooth_labels semantics, in float32.

mode 'uniform': targets (1 - a) * one_hot + a / K; mode 'others': 1 - a on the label and
a / (K - 1) elsewhere (the MindSpore zoo's CrossEntropySmooth). configs/base.py says which.
"""

from __future__ import annotations

import mindspore as ms
from mindspore import nn, ops


class SmoothedCrossEntropy(nn.Cell):
    def __init__(self, num_classes: int, label_smoothing: float = 0.0, mode: str = "uniform"):
        super().__init__()
        self.num_classes = num_classes
        if mode == "others":
            self.on_value = 1.0 - label_smoothing
            self.off_value = label_smoothing / (num_classes - 1)
        else:
            self.on_value = 1.0 - label_smoothing + label_smoothing / num_classes
            self.off_value = label_smoothing / num_classes

    def construct(self, logits, labels):
        logp = ops.log_softmax(logits.astype(ms.float32), -1)
        target = ops.one_hot(labels, self.num_classes, self.on_value, self.off_value)
        return -(target * logp).sum(-1).mean()


class SoftTargetCrossEntropy(nn.Cell):
    """CE against soft targets (mixup / cutmix; smoothing is already in the targets)."""

    def construct(self, logits, targets):
        logp = ops.log_softmax(logits.astype(ms.float32), -1)
        return -(targets.astype(ms.float32) * logp).sum(-1).mean()

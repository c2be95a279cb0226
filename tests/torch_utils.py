"""Helpers for parity tests against PyTorch references."""

from __future__ import annotations

import numpy as np
import torch

from models import layout


def randomize_batchnorm(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    """Random BN affine params and running statistics, so parity covers the eval-mode BN path."""
    g = torch.Generator().manual_seed(seed)
    for m in module.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.running_mean.normal_(0.0, 0.2, generator=g)
            m.running_var.uniform_(0.5, 1.5, generator=g)
            m.weight.data.normal_(1.0, 0.2, generator=g)
            m.bias.data.normal_(0.0, 0.2, generator=g)
    return module.eval()


def random_images(
    batch: int, height: int, width: int, seed: int = 0
) -> tuple[torch.Tensor, np.ndarray]:
    """The same random batch as NCHW torch and NHWC numpy."""
    x = torch.randn(batch, 3, height, width, generator=torch.Generator().manual_seed(seed))
    return x, x.numpy().transpose(0, 2, 3, 1).copy()


def official_state_dict(flat: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Canonical weights under the authors' PyTorch names: the inverse of the generic leaf rules."""
    leaves = {"kernel": "weight", "scale": "weight", "mean": "running_mean", "var": "running_var"}
    sd = {}
    for key, value in flat.items():
        module, leaf = layout.split_key(key)
        sd[f"{module}.{leaves.get(leaf, leaf)}"] = layout.from_flax_layout(value)
        if leaf == "var":
            sd[f"{module}.num_batches_tracked"] = np.zeros((), np.int64)
    return sd

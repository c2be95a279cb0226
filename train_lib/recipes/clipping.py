"""Gradient clipping by global norm (train.grad_clip_norm), written once for both sides.

Every gradient is multiplied by max_norm / max(global_norm, max_norm), global_norm being the L2
norm of all gradients together. Within max_norm the factor is 1 exactly (max_norm / max_norm),
so such a step equals the unclipped one bit for bit. PyTorch's clip_grad_norm_ (timm's recipes)
scales the same way (with 1e-6 added to the norm). optax.clip_by_global_norm selects
(g / global_norm) * max_norm instead: equal up to rounding, but on XLA:CPU (the test suite's
fast-compile flags) that select over every gradient made HLG's train step compile ~9 s slower
(46.0 against 37.2 s, HLG-mobile, batch 2).
`xp` is jax.numpy (the jitted JAX step) or mindspore.ops (the MindSpore step cell).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def factor(global_norm: Any, max_norm: Any, xp: Any = np) -> Any:
    """What every gradient is multiplied by."""
    return max_norm / xp.maximum(global_norm, max_norm)

"""Which parameters get weight decay, by canonical name; one rule for optax and MindSpore.

optim.decay_norm_and_bias=True decays every parameter (torch SGD(weight_decay=...) over all).
False is timm's rule for transformers (`param_groups_weight_decay`): no decay on 1-D parameters
(norm scales and shifts, biases) nor on the names the model family declares as its
`no_weight_decay` (position embeddings, cls token), matched against each dotted-name segment.
"""

from __future__ import annotations

import importlib
import re

# family -> framework-free module holding its NO_WEIGHT_DECAY patterns (absent = none).
_DECLARED_IN = {"hlg": "models.hlg_arch", "hlg_zoo": "models.hlg_arch"}


def no_weight_decay(family: str | None) -> tuple[str, ...]:
    """The regexes a family declares (timm's model.no_weight_decay())."""
    module = _DECLARED_IN.get(family or "")
    return tuple(getattr(importlib.import_module(module), "NO_WEIGHT_DECAY", ())) if module else ()


def decayed(name: str, ndim: int, *, family: str | None, decay_norm_and_bias: bool) -> bool:
    """Whether the parameter `name` (canonical dotted name, or the MindSpore name: the same
    path) of `ndim` dimensions gets weight decay."""
    if decay_norm_and_bias:
        return True
    if ndim <= 1:
        return False
    patterns = no_weight_decay(family)
    return not any(re.fullmatch(p, seg) for seg in name.split(".") for p in patterns)

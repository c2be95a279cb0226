"""Parameter names of checkpoints made by the MindSpore model-zoo scripts (mindspore-ai/models).

Each zoo format is a small ordered rule set (regex -> replacement) from the zoo's parameter names
to our cells' MindSpore names; the generic rules of ascend_port.bridge then take them to canonical.
numpy/regex only, no mindspore.

HarDNet (`research/cv/hardnet/src/HarDNet.py`, classes HarDNet68 / HarDNet85; spec 1.5 / 3.2):
`net.layers.N.ConvLayer_Conv.weight`, `net.layers.N.ConvLayer_BN.{gamma,beta,moving_mean,
moving_variance}`, `...layer_list.K...`, `head.dense.{weight,bias}`. Its max-pools and dropouts
hold no parameters and sit at the same `layers` indices as our `base` entries, so the indices map
one to one. Two zoo quirks do not affect the weights: its 3x3 stem max-pool has 'valid' padding
(a 55x55 map instead of 56x56; our cell pads like the official PyTorch code) and its DWConvLayer
lacks `group=` (a full 3x3 conv). The zoo exposes only the non-ds models, so only those are listed;
a ds checkpoint from that buggy path would fail the shape check, naming the conv keys.

HRNet-W48 (`research/cv/HRNetW48_cls/src/cls_hrnet.py`, HighResolutionNet; spec 2.6 / 3.3): the
same module paths as the official code and ours (`stage3.0.fuse_layers.2.0.1.0.weight`,
`transition1.1.0.0.weight`, `downsamp_modules.0.0.bias`, `classifier.weight`), BN leaves
gamma/beta/moving_mean/moving_variance: no rule at all. 1631 entries, 1000 classes. Its fuse
upsample is ResizeNearestNeighbor to the target size, equal to ours at multiples of 32.

HLG-mobile (`research/cv/hlg/src/hlg.py`, hlg_mobile; spec 2 / 4.2): our `hlg_mobile_zoo`
mirrors that cell, so its names are ours too, including the parameter the zoo creates as
`Parameter(..., name='cls')` (attribute cls_token): no rule. 393 entries, 1001 classes.
Training checkpoints add AdamW state (adam_m.*, adam_v.*, beta1_power, beta2_power,
global_step, learning_rate), dropped like any optimizer state.

Both were checked against the zoo code itself: its cells, instantiated with MindSpore 2.10,
list exactly these names and shapes (see docs/ascend.md, "Model-zoo checkpoints").
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable

from models.hardnet_arch import CONFIGS as HARDNET_CONFIGS


@dataclasses.dataclass(frozen=True)
class ZooFormat:
    name: str  # --from-zoo NAME
    model: str  # our variant the checkpoint loads into
    source: str  # the zoo file whose names these are
    rules: tuple[tuple[str, str], ...]  # applied in order to every zoo key


def hardnet_head_index(variant: str) -> int:
    """Index of the classifier head in HarDNet's `base` list (the official numbering)."""
    cfg = HARDNET_CONFIGS[variant]
    index = 3  # stem conv, second conv, pool / DW downsampler
    for i, down in enumerate(cfg.downsample):
        index += 2 + down  # block, transition [, downsampler]
        if i == len(cfg.downsample) - 1 and cfg.block_drop_rate:
            index += 1  # HarDNet85's Dropout before the last transition
    return index


def _hardnet_rules(variant: str) -> tuple[tuple[str, str], ...]:
    return (
        (r"^net\.layers\.", "base."),
        (r"\.layer_list\.", ".layers."),
        (r"\.CombConvLayer_Conv\.", ".layer1."),
        (r"\.CombConvLayer_DWConv\.", ".layer2."),
        (r"\.ConvLayer_Conv\.", ".conv."),
        (r"\.ConvLayer_BN\.", ".norm."),
        (r"\.DWConvLayer_Conv\.", ".dwconv."),
        (r"\.DWConvLayer_BN\.", ".norm."),
        (r"^head\.dense\.", f"base.{hardnet_head_index(variant)}.3."),
    )


_HARDNET_SOURCE = "mindspore-ai/models research/cv/hardnet/src/HarDNet.py"
_HRNET_SOURCE = "mindspore-ai/models research/cv/HRNetW48_cls/src/cls_hrnet.py (HRNet-W48)"
_HLG_SOURCE = "mindspore-ai/models research/cv/hlg/src/hlg.py (hlg_mobile)"

FORMATS: dict[str, ZooFormat] = {
    f.name: f
    for f in (
        ZooFormat(
            "hardnet68", "hardnet68", _HARDNET_SOURCE + " (HarDNet68)", _hardnet_rules("hardnet68")
        ),
        ZooFormat(
            "hardnet85", "hardnet85", _HARDNET_SOURCE + " (HarDNet85)", _hardnet_rules("hardnet85")
        ),
        # The cells mirror these zoo cells name for name: identity renames.
        ZooFormat("HRNetW48_cls", "hrnet_w48", _HRNET_SOURCE, ()),
        ZooFormat("hlg", "hlg_mobile_zoo", _HLG_SOURCE, ()),
    )
}


def get(name: str) -> ZooFormat:
    if name not in FORMATS:
        raise KeyError(f"unknown zoo format {name!r}; known: {', '.join(sorted(FORMATS))}")
    return FORMATS[name]


def rename(name: str, keys: Iterable[str]) -> dict[str, str]:
    """{zoo key: our MindSpore name}; two zoo keys landing on one name is an error."""
    fmt = get(name)
    compiled = [(re.compile(pattern), repl) for pattern, repl in fmt.rules]
    out, seen = {}, {}
    for key in keys:
        new = key
        for pattern, repl in compiled:
            new = pattern.sub(repl, new)
        if new in seen:
            raise ValueError(f"zoo {name}: {seen[new]!r} and {key!r} both map to {new!r}")
        seen[new] = key
        out[key] = new
    return out

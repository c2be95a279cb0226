"""Which weights are the classifier: one framework-free rule (plain Python) for every family.

The classifier is the last 2-D weight whose output axis has num_classes entries, with its
sibling leaves (the bias). Every family here ends in one such dense layer (HarDNet
`base.N.3`, HRNet `classifier`, HLG `head`); fine-tuning loads everything else and gives it
a fresh init.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence


def classifier_keys(
    shapes: Mapping[str, Sequence[int]], num_classes: int, out_axis: int = -1
) -> list[str]:
    """Keys of the classifier's leaves in `shapes` (in its order), or [] if there is none.

    out_axis: -1 for the canonical Flax layout (dense kernel [in, out]), 0 for the
    PyTorch/MindSpore one ([out, in]).
    """
    dense = [k for k, s in shapes.items() if len(s) == 2 and s[out_axis] == num_classes]
    if not dense:
        return []
    prefix = dense[-1].rpartition(".")[0] + "."
    return [k for k in shapes if k.startswith(prefix) and "." not in k[len(prefix) :]]

"""Variants whose code paths another registered variant already runs.

HRNet W30/W32/W40/W44/W64 are W18 with another base width; HLG small/medium/large are HLG-tiny
with other widths and stage-3 depths. Compiling a train step (20-200 s each on 2 CPU cores) runs
on the representative only; every variant keeps its exact parameter count, an abstract forward in
eval and train mode, its logits against the MindSpore cell and (HRNet) against timm.
"""

SAME_CODE_PATHS: dict[str, str] = {
    **{f"hrnet_w{w}": "hrnet_w18" for w in (30, 32, 40, 44, 64)},
    **{f"hlg_{s}": "hlg_tiny" for s in ("small", "medium", "large")},
}

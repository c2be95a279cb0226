"""Variants whose code paths another registered variant already runs.

Every HRNet is HRNet-W18-small's code with other widths, stage-1 blocks, module and block
counts (models/hrnet_arch.py); HLG tiny/small/medium/large are HLG-mobile with other widths,
heads and depths (hlg_tiny_dwconv adds the h0_conv window tokens, so it keeps its own compiled
run); HarDNet-68ds is HarDNet-39ds's depthwise blocks with other widths and depths, HarDNet-68
is HarDNet-85's plain blocks without the block dropout (85 runs that one too). Compiling a train
step (20-200 s each on 2 CPU cores) runs on the representative only; every variant keeps its
exact parameter count, an abstract forward in eval and train mode, its weights' exact round trip
through the MindSpore cell and, for HRNet and HarDNet, its logits against timm or pytorchcv
(HRNet's width/depth variants at 96 px, HRNet-W18-small at 224 px). Logits against the MindSpore
cell: every variant but those in tests/test_ascend_port.NO_FORWARD (there, why). The one-step
parity trains the representatives.
"""

SAME_CODE_PATHS: dict[str, str] = {
    **{
        f"hrnet_w{w}": "hrnet_w18_small"
        for w in ("18", "18_small_v2", "30", "32", "40", "44", "48", "64")
    },
    **{f"hlg_{s}": "hlg_mobile" for s in ("tiny", "small", "medium", "large")},
    "hardnet68ds": "hardnet39ds",
    "hardnet68": "hardnet85",
}

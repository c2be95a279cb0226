"""Parameter names and shapes of MindSpore model-zoo checkpoints, rebuilt from the spec.

Independent of ascend_port's rename rules: this walks the zoo's own constructor logic
(shared/specs/hardnet_hrnet.md 1.5 / 3.2; mindspore-ai/models research/cv/hardnet/src/HarDNet.py)
so that converting its output tests those rules. numpy only.
"""

from __future__ import annotations

from models.hardnet_arch import CONFIGS, block_output_layers, harmonic_layer

# Entry counts the spec measured on the zoo cells (HarDNet68 / HarDNet85).
SPEC_ENTRY_COUNTS = {"hardnet68": 337, "hardnet85": 422}


def hardnet(variant: str, num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """{zoo parameter name: shape} of the zoo's HarDNet68 / HarDNet85 cell."""
    cfg = CONFIGS[variant]
    assert not cfg.depthwise, "the zoo exposes only HarDNet68 and HarDNet85"
    params: dict[str, tuple[int, ...]] = {}

    def conv_layer(prefix: str, cin: int, cout: int, kernel: int) -> None:  # zoo _ConvLayer
        params[f"{prefix}.ConvLayer_Conv.weight"] = (cout, cin, kernel, kernel)
        for leaf in ("moving_mean", "moving_variance", "gamma", "beta"):
            params[f"{prefix}.ConvLayer_BN.{leaf}"] = (cout,)

    c0, c1 = cfg.first_ch
    conv_layer("net.layers.0", 3, c0, 3)
    conv_layer("net.layers.1", c0, c1, 3)
    index, ch = 3, c1  # net.layers.2 is nn.MaxPool2d(3, 2): no parameters
    last = len(cfg.n_layers) - 1
    for i, (growth, n) in enumerate(zip(cfg.growth, cfg.n_layers, strict=True)):
        specs = [harmonic_layer(k, ch, growth, cfg.grmul) for k in range(1, n + 1)]
        for k, spec in enumerate(specs):
            conv_layer(f"net.layers.{index}.layer_list.{k}", spec.in_channels, spec.out_channels, 3)
        block_out = sum(specs[k - 1].out_channels for k in block_output_layers(n))
        index += 1
        if i == last and variant == "hardnet85":
            index += 1  # nn.Dropout(p=0.1)
        conv_layer(f"net.layers.{index}", block_out, cfg.ch_list[i], 1)
        index += 1
        ch = cfg.ch_list[i]
        if cfg.downsample[i]:
            index += 1  # nn.MaxPool2d(2, 2)
    params["head.dense.weight"] = (num_classes, ch)
    params["head.dense.bias"] = (num_classes,)
    return params


def training_entries(params: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """What the zoo's train.py (Model + nn.Momentum) adds to a checkpoint: moments and scalars."""
    extra = {f"moments.{k}": s for k, s in params.items() if "moving_" not in k}
    extra.update({"global_step": (1,), "learning_rate": (10,), "momentum": ()})
    return extra

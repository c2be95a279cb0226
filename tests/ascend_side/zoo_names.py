"""Parameter names and shapes of MindSpore model-zoo checkpoints, rebuilt from the spec.

Independent of ascend_port's rename rules and cells: this walks the zoo's own constructor logic
(mindspore-ai/models @ eab643f51: research/cv/hardnet/src/HarDNet.py, research/cv/HRNetW48_cls/
src/cls_hrnet.py + src/config.py, research/cv/hlg/src/hlg.py), with the zoo's own configuration numbers
written out here, so that converting its output tests those rules. The HRNet and HLG generators
were compared with the real zoo cells instantiated under MindSpore 2.10 (identical names and
shapes; docs/ascend.md). numpy only.
"""

from __future__ import annotations

from models.hardnet_arch import CONFIGS, block_output_layers, harmonic_layer

# Entry counts the spec measured on the zoo cells (HarDNet68 / HarDNet85, HRNet-W48, HLG-mobile).
SPEC_ENTRY_COUNTS = {"hardnet68": 337, "hardnet85": 422, "hrnet_w48": 1631, "hlg_mobile_zoo": 393}
_BN = ("gamma", "beta", "moving_mean", "moving_variance")


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


def hrnet_w48(num_classes: int = 1000) -> dict[str, tuple[int, ...]]:
    """{zoo parameter name: shape} of the zoo's HighResolutionNet with config_hrnetw48_cls."""
    params: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int, bias: bool = False) -> None:
        params[f"{name}.weight"] = (cout, cin, k, k)
        if bias:
            params[f"{name}.bias"] = (cout,)

    def bn(name: str, c: int) -> None:
        params.update({f"{name}.{leaf}": (c,) for leaf in _BN})

    def block(prefix: str, kind: str, inplanes: int, planes: int) -> int:  # Basic/Bottleneck
        exp = 4 if kind == "BOTTLENECK" else 1
        if kind == "BOTTLENECK":
            conv(f"{prefix}.conv1", inplanes, planes, 1)
            bn(f"{prefix}.bn1", planes)
            conv(f"{prefix}.conv2", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
            conv(f"{prefix}.conv3", planes, planes * 4, 1)
            bn(f"{prefix}.bn3", planes * 4)
        else:
            conv(f"{prefix}.conv1", inplanes, planes, 3)
            bn(f"{prefix}.bn1", planes)
            conv(f"{prefix}.conv2", planes, planes, 3)
            bn(f"{prefix}.bn2", planes)
        if inplanes != planes * exp:  # downsample = SequentialCell([Conv2d 1x1, BN])
            conv(f"{prefix}.downsample.0", inplanes, planes * exp, 1)
            bn(f"{prefix}.downsample.1", planes * exp)
        return planes * exp

    conv("conv1", 3, 64, 3)
    bn("bn1", 64)
    conv("conv2", 64, 64, 3)
    bn("bn2", 64)
    ch = 64
    for b in range(4):  # STAGE1: 4 x BOTTLENECK(64) -> 256
        ch = block(f"layer1.{b}", "BOTTLENECK", ch, 64)
    prev = [ch]
    widths = (48, 96, 192, 384)
    for s, modules in ((2, 1), (3, 4), (4, 3)):  # STAGE2..4: NUM_MODULES, BASIC x 4 per branch
        cur = list(widths[:s])
        for i, c in enumerate(cur):  # _make_transition_layer
            if i < len(prev):
                if c != prev[i]:
                    conv(f"transition{s - 1}.{i}.0", prev[i], c, 3)
                    bn(f"transition{s - 1}.{i}.1", c)
            else:
                for j in range(i + 1 - len(prev)):
                    out = c if j == i - len(prev) else prev[-1]
                    conv(f"transition{s - 1}.{i}.{j}.0", prev[-1], out, 3)
                    bn(f"transition{s - 1}.{i}.{j}.1", out)
        for m in range(modules):  # HighResolutionModule
            prefix = f"stage{s}.{m}"
            for br, c in enumerate(cur):
                for b in range(4):
                    block(f"{prefix}.branches.{br}.{b}", "BASIC", c, c)
            for i, ci in enumerate(cur):
                for j, cj in enumerate(cur):
                    if j > i:
                        conv(f"{prefix}.fuse_layers.{i}.{j}.0", cj, ci, 1)
                        bn(f"{prefix}.fuse_layers.{i}.{j}.1", ci)
                    elif j < i:
                        for k in range(i - j):
                            out = ci if k == i - j - 1 else cj
                            conv(f"{prefix}.fuse_layers.{i}.{j}.{k}.0", cj, out, 3)
                            bn(f"{prefix}.fuse_layers.{i}.{j}.{k}.1", out)
        prev = cur
    head = (32, 64, 128, 256)
    for b, c in enumerate(prev):  # _make_head
        block(f"incre_modules.{b}.0", "BOTTLENECK", c, head[b])
    for b in range(3):
        conv(f"downsamp_modules.{b}.0", head[b] * 4, head[b + 1] * 4, 3, bias=True)
        bn(f"downsamp_modules.{b}.1", head[b + 1] * 4)
    conv("final_layer.0", 1024, 2048, 1, bias=True)
    bn("final_layer.1", 2048)
    params["classifier.weight"] = (num_classes, 2048)
    params["classifier.bias"] = (num_classes,)
    return params


def hlg_mobile(num_classes: int = 1001) -> dict[str, tuple[int, ...]]:
    """{zoo parameter name: shape} of the zoo's HLG built by hlg_mobile()."""
    d_model, num_head, dim_head = (32, 64, 192, 384), (2, 4, 8, 16), (16, 16, 24, 24)
    mlp = (8, 8, 4, 4)
    sizes = (56, 28, 14, 7)
    params: dict[str, tuple[int, ...]] = {}

    def conv(name: str, cin: int, cout: int, k: int) -> None:  # every zoo conv has a bias
        params[f"{name}.weight"] = (cout, cin, k, k)
        params[f"{name}.bias"] = (cout,)

    def bn(name: str, c: int) -> None:
        params.update({f"{name}.{leaf}": (c,) for leaf in _BN})

    def dense(name: str, cin: int, cout: int) -> None:
        params[f"{name}.weight"] = (cout, cin)
        params[f"{name}.bias"] = (cout,)

    cin = 3
    for s in range(4):
        pe = f"patch_embed{s + 1}"  # PatchEmbed builds both branches
        conv(f"{pe}.conv1", cin, 32, 3)
        bn(f"{pe}.norm1", 32)
        conv(f"{pe}.conv2", 32, 32, 3)
        bn(f"{pe}.norm2", 32)
        conv(f"{pe}.conv3", 32, d_model[s], 3)
        bn(f"{pe}.norm3", d_model[s])
        conv(f"{pe}.conv", cin, d_model[s], 7 if s == 0 else 3)
        bn(f"{pe}.norm", d_model[s])
        for i in range(2):  # Transformer
            blk, dim, inner = f"block{s + 1}_{i}", d_model[s], num_head[s] * dim_head[s]
            for n in ("norm0", "norm1", "norm2"):
                params[f"{blk}.{n}.gamma"] = params[f"{blk}.{n}.beta"] = (dim,)
            for n in ("to_q", "to_k", "to_v"):
                dense(f"{blk}.attn.{n}", dim, inner)
            dense(f"{blk}.attn.proj", inner, dim)
            dense(f"{blk}.mlp.ff1", dim, dim * mlp[s])
            dense(f"{blk}.mlp.ff2", dim * mlp[s], dim)
            q = dim // 4
            for idx, (a, b, k) in zip(
                (0, 3, 6), ((dim, q, 1), (q, q, 3), (q, dim, 1)), strict=True
            ):
                conv(f"{blk}.spatial_smooth.0.{idx}", a, b, k)
                bn(f"{blk}.spatial_smooth.0.{idx + 1}", b)
        cin = d_model[s]
    params["cls"] = (1, 1, d_model[3])
    for s, size in enumerate(sizes):
        params[f"pos_embed{s + 1}"] = (1, size * size + (1 if s == 3 else 0), d_model[s])
    params["norm.gamma"] = params["norm.beta"] = (d_model[3],)
    dense("head", d_model[3], num_classes)
    return params


def zoo_params(model: str) -> dict[str, tuple[int, ...]]:
    """The zoo checkpoint names and shapes for our variant `model` (at the zoo's class count)."""
    if model in ("hardnet68", "hardnet85"):
        return hardnet(model)
    if model == "hrnet_w48":
        return hrnet_w48()
    if model == "hlg_mobile_zoo":
        return hlg_mobile()
    raise KeyError(model)


def training_entries(model: str, params: dict[str, tuple[int, ...]]) -> dict[str, tuple[int, ...]]:
    """What the zoo's train.py adds to a checkpoint: optimizer state and scalars.

    HarDNet: Model + nn.Momentum (moments.*). HRNet-W48: nn.RMSProp with momentum (mean_square.*,
    moment.*). HLG: its own AdamW (adam_m.*, adam_v.*, beta1_power, beta2_power).
    """
    trainable = {k: s for k, s in params.items() if "moving_" not in k}
    if model == "hrnet_w48":
        prefixes, scalars = ("mean_square", "moment"), {"momentum": ()}
    elif model == "hlg_mobile_zoo":
        prefixes, scalars = ("adam_m", "adam_v"), {"beta1_power": (1,), "beta2_power": (1,)}
    else:
        prefixes, scalars = ("moments",), {"momentum": ()}
    extra = {f"{p}.{k}": s for p in prefixes for k, s in trainable.items()}
    extra.update({"global_step": (1,), "learning_rate": (10,), **scalars})
    return extra

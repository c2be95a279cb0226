"""Official HLG cells (hlg_mobile ... hlg_large) mirroring models/hlg.py attribute for attribute.

Tables and the position-bias offsets come from models/hlg_arch.py, shared with the Flax model,
so a parameter such as `block1.0.pos_global.pos1.0.gamma` is the canonical
`block1.0.pos_global.pos1.0.scale` up to the generic leaf rename of ascend_port.bridge.

Numerics as the official PyTorch code: exact-erf GELU,
LayerNorm eps 1e-6 (1e-5 inside the DynamicPosBias MLP), BN momentum 0.9 / eps 1e-5, symmetric
padding, softmax in float32. Convs and BN run on NCHW maps; the token parts (LayerNorm, Dense,
windows, attention) run on NHWC maps in raster order exactly like the Flax code, so the residual
stream between blocks is NHWC and each conv transposes in and out.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import nn, ops
from mindspore.common import initializer as init

from ascend_port.cells import layers
from models.hlg_arch import (
    CONFIGS,
    DPB_LN_EPS,
    INPUT_SIZE,
    LN_EPS,
    WINDOW,
    HLGConfig,
    global_offsets,
    grid_offsets,
)

# timm's trunc_normal_(std=.02) truncates at +-2 absolute: a plain normal (models/hlg.py).
DENSE_INIT = init.Normal(sigma=0.02)


# --------------------------------------------------------------------------- tensor helpers
def nchw(x: ms.Tensor) -> ms.Tensor:
    return ops.transpose(x, (0, 3, 1, 2))


def nhwc(x: ms.Tensor) -> ms.Tensor:
    return ops.transpose(x, (0, 2, 3, 1))


def window_partition(x: ms.Tensor, dilated: bool, window: int = WINDOW) -> ms.Tensor:
    """(B, H, W, C) -> (B * nH * nW, window**2, C), as models.hlg.window_partition: windows
    ordered p * nW + q, tokens a * window + b; contiguous rows p*window + a, dilated a*nH + p."""
    b, h, w, c = x.shape
    nh, nw = h // window, w // window
    if dilated:
        x = ops.transpose(ops.reshape(x, (b, window, nh, window, nw, c)), (0, 2, 4, 1, 3, 5))
    else:
        x = ops.transpose(ops.reshape(x, (b, nh, window, nw, window, c)), (0, 1, 3, 2, 4, 5))
    return ops.reshape(x, (b * nh * nw, window * window, c))


def window_unpartition(
    x: ms.Tensor, height: int, width: int, dilated: bool, window: int = WINDOW
) -> ms.Tensor:
    """The inverse of `window_partition`: (B * nH * nW, window**2, C) -> (B, H, W, C)."""
    nh, nw = height // window, width // window
    c = x.shape[-1]
    b = x.shape[0] // (nh * nw)
    x = ops.reshape(x, (b, nh, nw, window, window, c))
    if dilated:
        x = ops.transpose(x, (0, 3, 1, 4, 2, 5))  # (B, a, p, b, q, C): row a*nH + p
    else:
        x = ops.transpose(x, (0, 1, 3, 2, 4, 5))  # (B, p, a, q, b, C): row p*7 + a
    return ops.reshape(x, (b, height, width, c))


def attention(q, k, v, heads: int, bias, scale: float):
    """Multi-head attention on (B, N, C) q and (B, M, C) k, v; `bias` is (heads, N, M) or None.
    Logits scaled after the product and softmax in float32, as models.hlg.attention."""
    b, n, c = q.shape
    m = k.shape[1]
    d = c // heads
    q = ops.transpose(ops.reshape(q, (b, n, heads, d)), (0, 2, 1, 3))
    k = ops.transpose(ops.reshape(k, (b, m, heads, d)), (0, 2, 3, 1))
    v = ops.transpose(ops.reshape(v, (b, m, heads, d)), (0, 2, 1, 3))
    logits = ops.matmul(q, k) * scale
    if bias is not None:
        logits = logits + ops.expand_dims(bias.astype(logits.dtype), 0)
    probs = ops.softmax(logits.astype(ms.float32), -1).astype(logits.dtype)
    out = ops.transpose(ops.matmul(probs, v), (0, 2, 1, 3))
    return ops.reshape(out, (b, n, c))


def _constant(array: np.ndarray) -> ms.Tensor:
    """A numpy constant as a Tensor (folded into the graph in GRAPH mode)."""
    return ms.Tensor(array)


# --------------------------------------------------------------------------- layers
def layer_norm(features: int, eps: float = LN_EPS) -> nn.LayerNorm:
    return layers.layer_norm(features, eps=eps)


def dense(cin: int, cout: int) -> nn.Dense:
    return layers.dense(cin, cout, weight_init=DENSE_INIT)


def conv(
    cin: int, cout: int, kernel: int, *, stride: int = 1, groups: int = 1, bias: bool = True
) -> nn.Conv2d:
    """PyTorch's default conv init (kaiming_uniform a=sqrt(5) and its bias rule), k//2 pad."""
    fan_in = cin // groups * kernel * kernel
    return layers.conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        groups=groups,
        bias=bias,
        weight_init=layers.TORCH_DEFAULT,
        bias_init=layers.torch_bias(fan_in) if bias else "zeros",
    )


def gelu() -> nn.GELU:
    return layers.gelu(approximate=False)  # torch nn.GELU(): exact erf


class DynamicPosBias(nn.Cell):
    """Offsets (dy, dx) -> one bias per head; attributes pos_proj, pos{1,2,3} (LN, ReLU, Dense).
    Hidden width C // 16 (the official module divides dim // 4 by 4 again)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        p = dim // 4 // 4
        self.pos_proj = dense(2, p)

        def stage(cout: int) -> nn.SequentialCell:
            return nn.SequentialCell([layer_norm(p, DPB_LN_EPS), nn.ReLU(), dense(p, cout)])

        self.pos1, self.pos2, self.pos3 = stage(p), stage(p), stage(heads)

    def construct(self, offsets):
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))

    def bias(self, offsets: np.ndarray, n: int, m: int):
        """The (heads, n, m) bias for constant (n*m, 2) offsets: one MLP run per forward.
        (Spelled out: GRAPH mode cannot call `self` from a method.)"""
        pos = self.pos3(self.pos2(self.pos1(self.pos_proj(_constant(offsets)))))
        return ops.transpose(ops.reshape(pos, (n, m, -1)), (2, 0, 1))


class InnerPatchEmbed(nn.Cell):
    """Shortcut of a block: grouped 3x3 s2 conv (groups = C_in) + BN + GELU when it downsamples
    (attribute `proj`), else the identity (proj = None). NCHW."""

    def __init__(self, cin: int, cout: int, down_sample: bool):
        super().__init__()
        self.proj = (
            nn.SequentialCell(
                [conv(cin, cout, 3, stride=2, groups=cin), layers.batch_norm(cout), gelu()]
            )
            if down_sample
            else None
        )

    def construct(self, x):
        return x if self.proj is None else self.proj(x)


class DWMlp(nn.Cell):
    """1x1 conv, BN, GELU, depthwise 3x3 (stride 2 when downsampling), BN, GELU, 1x1 conv. NCHW."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int):
        super().__init__()
        self.fc1 = conv(cin, hidden, 1)
        self.norm1 = layers.batch_norm(hidden)
        self.fc2 = conv(hidden, hidden, 3, stride=stride, groups=hidden)
        self.norm2 = layers.batch_norm(hidden)
        self.fc3 = conv(hidden, cout, 1)
        self.act = gelu()

    def construct(self, x):
        x = self.act(self.norm1(self.fc1(x)))
        x = self.act(self.norm2(self.fc2(x)))
        return self.fc3(x)


class GlobalAttention(nn.Cell):
    """`global_attn`: attention with an additive bias, then `proj` (its only parameters)."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.proj = dense(dim, dim)

    def construct(self, q, k, v, bias):
        return self.proj(attention(q, k, v, self.heads, bias, self.scale))


def smoothing(dim: int) -> nn.SequentialCell:
    """1x1 C->C/4, BN, GELU, dense 3x3, BN, GELU, 1x1 C/4->C, BN (`spatial_smooth.0.*`). NCHW."""
    q = dim // 4
    return nn.SequentialCell(
        [
            conv(dim, q, 1),
            layers.batch_norm(q),
            gelu(),
            conv(q, q, 3),
            layers.batch_norm(q),
            gelu(),
            conv(q, dim, 1),
            layers.batch_norm(dim),
        ]
    )


class HLGBlock(nn.Cell):
    """`HLGLayers` on NHWC maps: conv MLP (post-norm) on the shortcut, then local-global
    attention (stages 1-3) or one global MHSA with the LayerNorm on its output (stage 4)."""

    def __init__(
        self,
        cin: int,
        dim: int,
        heads: int,
        *,
        down_sample: bool,
        dilated: bool,
        global_only: bool,
        drop_path: float,
        window_tokens: str = "mean",
    ):
        super().__init__()
        self.heads, self.dilated, self.global_only = heads, dilated, global_only
        self.dwconv_tokens = window_tokens == "dwconv" and not global_only
        self.scale = (dim // heads) ** -0.5
        if not global_only:
            self.aux_q = conv(dim, dim, 3, groups=dim)
            self.norm0 = layer_norm(dim)
            self.h0_norm = layer_norm(dim)
            self.pos_local = DynamicPosBias(dim, heads)
            self.spatial_smooth = nn.CellList([smoothing(dim)])
            if window_tokens == "dwconv":  # depthwise 7x7 stride 7, no padding
                self.h0_conv = layers.conv2d(
                    dim,
                    dim,
                    WINDOW,
                    stride=WINDOW,
                    groups=dim,
                    bias=True,
                    padding=0,
                    weight_init=layers.TORCH_DEFAULT,
                    bias_init=layers.torch_bias(WINDOW * WINDOW),
                )
        self.down_proj = InnerPatchEmbed(cin, dim, down_sample)
        self.q = dense(dim, dim)
        self.k = dense(dim, dim)
        self.v = dense(dim, dim)
        self.pos_global = DynamicPosBias(dim, heads)
        self.global_attn = GlobalAttention(dim, heads)
        self.norm1 = layer_norm(dim)
        self.norm2 = layer_norm(dim)
        self.mlp = DWMlp(cin, 4 * cin, dim, 2 if down_sample else 1)
        self.drop_path = layers.DropPath(drop_path)
        self.act = gelu()

    def construct(self, x):
        xc = nchw(x)
        x = nhwc(self.down_proj(xc)) + self.drop_path(self.norm2(nhwc(self.mlp(xc))))
        b, h, w, c = x.shape
        if self.global_only:
            t = ops.reshape(x, (b, h * w, c))
            bias = self.pos_global.bias(grid_offsets(h), h * w, h * w)
            out = self.global_attn(self.q(t), self.k(t), self.v(t), bias)
            return x + self.drop_path(ops.reshape(self.norm1(out), (b, h, w, c)))

        s = self.act(x + nhwc(self.spatial_smooth[0](nchw(x))))
        x, q, loc, g = self.local(s)
        q = q + nhwc(self.aux_q(nchw(self.norm1(loc))))
        num_windows = g.shape[1]
        bias = self.pos_global.bias(global_offsets(h, w), h * w, num_windows)
        out = self.global_attn(ops.reshape(q, (b, h * w, c)), self.k(g), self.v(g), bias)
        return x + self.drop_path(ops.reshape(out, (b, h, w, c)))

    def local(self, s):
        """Local step on the smoothed NHWC map s: (s + local attention, shared q, local output)
        as NHWC maps and the LayerNormed window means (B, nWin, C)."""
        b, h, w, c = s.shape
        win = window_partition(s, self.dilated)  # (B * nWin, 49, C)
        u = self.norm0(win)
        q, v = self.q(u), self.v(u)
        bias = self.pos_local.bias(grid_offsets(WINDOW), WINDOW**2, WINDOW**2)
        loc = attention(q, q, v, self.heads, bias, self.scale)  # k = q, no output projection
        win = win + loc
        if self.dwconv_tokens:  # token a * 7 + b is pixel (a, b) of its window
            n = win.shape[0]
            g = self.h0_conv(ops.reshape(ops.transpose(win, (0, 2, 1)), (n, c, WINDOW, WINDOW)))
        else:
            g = ops.mean(win, 1)
        g = self.h0_norm(ops.reshape(g, (b, -1, c)))
        return (
            window_unpartition(win, h, w, self.dilated),
            window_unpartition(q, h, w, self.dilated),
            window_unpartition(loc, h, w, self.dilated),
            g,
        )


class HLG(layers.DenseHeadClassifier):
    """Conv stem (s0_conv), four stages (block1..block4), LayerNorm, mean over tokens, head."""

    def __init__(
        self, cfg: HLGConfig, *, num_classes: int = 1000, drop_path_rate: float | None = None
    ):
        super().__init__()
        dpr = cfg.block_drop_path_rates(drop_path_rate)
        c1 = cfg.dims[0]
        self.s0_conv = nn.CellList(
            [
                nn.SequentialCell(
                    [conv(3, c1, 3, stride=2, bias=False), layers.batch_norm(c1), gelu()]
                ),
                nn.SequentialCell([conv(c1, c1, 3, bias=False), layers.batch_norm(c1), gelu()]),
            ]
        )
        cin, cur = c1, 0
        for stage, (dim, heads, depth) in enumerate(
            zip(cfg.dims, cfg.heads, cfg.depths, strict=True)
        ):
            blocks = [
                HLGBlock(
                    cin if i == 0 else dim,
                    dim,
                    heads,
                    down_sample=i == 0,
                    dilated=i % 2 == 1,
                    global_only=stage == 3,
                    drop_path=dpr[cur + i],
                    window_tokens=cfg.window_tokens,
                )
                for i in range(depth)
            ]
            setattr(self, f"block{stage + 1}", nn.SequentialCell(blocks))
            cin, cur = dim, cur + depth
        self.norm = layer_norm(cfg.dims[-1])
        self._init_head(cfg.dims[-1], num_classes)

    def forward_features(self, x):
        """NCHW images (B, 3, 224, 224) -> pooled (B, num_features)."""
        if x.shape[1] != 3 or x.shape[2] != INPUT_SIZE or x.shape[3] != INPUT_SIZE:
            raise ValueError(
                "HLG takes (B, 3, 224, 224) images only (its position biases are "
                "built for that size)"
            )
        for stem in self.s0_conv:
            x = stem(x)
        x = nhwc(x)
        x = self.block1(x)
        x = self.block2(x)
        x = self.block3(x)
        x = self.block4(x)
        x = self.norm(x)
        return ops.mean(x.astype(ms.float32), (1, 2)).astype(x.dtype)


def build(
    name: str,
    *,
    num_classes: int = 1000,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
) -> HLG:
    """The cell for a registered official HLG variant. It has no classifier dropout, so
    `drop_rate` must be unset; drop_path_rate None is the variant's recipe rate."""
    if drop_rate:
        raise ValueError(f"{name} has no classifier dropout (drop_rate={drop_rate})")
    return HLG(CONFIGS[name], num_classes=num_classes, drop_path_rate=drop_path_rate)

"""HLG (Hierarchical Local-Global Transformer, Zhang et al., arXiv 2207.09339): mobile .. large.

The official PyTorch code (fudan-zvg/SETR, hlg-classification/models/hlg.py) does not run as
published; this is the repaired build that reproduces the published Tiny/Small sizes (the module
set of the same repository's mmseg backbone, DWMlp hidden = 4 x block input channels, no local
branch in stage 4). The module tree mirrors that PyTorch state dict, so official state dicts
load through `models.from_torch` with no rename table.

Every block works on NHWC maps. Token order is raster order, the same as PyTorch's
`flatten(2).transpose(1, 2)`, so no token permutation is needed anywhere.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import layers
from models.hlg_arch import (
    CONFIGS,
    DPB_LN_EPS,
    INPUT_SIZE,
    WINDOW,
    HLGConfig,
    global_offsets,
    grid_offsets,
)
from models.layers import (
    GELU,
    ReLU,
    Sequential,
    attention,
    dense,
    layer_norm,
    torch_conv2d,
)
from models.registry import register


# --------------------------------------------------------------------------- windows
def window_partition(x: jax.Array, dilated: bool, window: int = WINDOW) -> jax.Array:
    """(B, H, W, C) -> (B * nH * nW, window**2, C), nH = H / window.

    Windows are ordered p * nW + q and the tokens inside one a * window + b. A contiguous window
    (p, q) holds rows p*window + a and columns q*window + b; a dilated one holds rows a*nH + p and
    columns b*nW + q (the 7x7 lattice of stride H / 7). Pure reshapes and transposes.
    """
    b, h, w, c = x.shape
    nh, nw = h // window, w // window
    if dilated:
        x = x.reshape(b, window, nh, window, nw, c).transpose(0, 2, 4, 1, 3, 5)
    else:
        x = x.reshape(b, nh, window, nw, window, c).transpose(0, 1, 3, 2, 4, 5)
    return x.reshape(b * nh * nw, window * window, c)


def window_unpartition(
    x: jax.Array, height: int, width: int, dilated: bool, window: int = WINDOW
) -> jax.Array:
    """The inverse of `window_partition`: (B * nH * nW, window**2, C) -> (B, H, W, C)."""
    nh, nw = height // window, width // window
    c = x.shape[-1]
    x = x.reshape(-1, nh, nw, window, window, c)
    if dilated:
        x = x.transpose(0, 3, 1, 4, 2, 5)  # (B, a, p, b, q, C): row a*nH + p
    else:
        x = x.transpose(0, 1, 3, 2, 4, 5)  # (B, p, a, q, b, C): row p*7 + a
    return x.reshape(-1, height, width, c)


class DynamicPosBias(nnx.Module):
    """Offsets (dy, dx) -> one bias per head; official keys pos_proj, pos{1,2,3}.{0,2}.

    The official module is built with dim // 4 and divides by 4 again: hidden width C // 16.
    """

    def __init__(self, dim: int, heads: int, *, dtype, rngs: nnx.Rngs):
        p = dim // 4 // 4
        self.pos_proj = dense(2, p, dtype=dtype, rngs=rngs)

        def stage(cout: int) -> Sequential:
            return Sequential(
                [
                    layer_norm(p, eps=DPB_LN_EPS, dtype=dtype, rngs=rngs),
                    ReLU(),
                    dense(p, cout, dtype=dtype, rngs=rngs),
                ]
            )

        self.pos1, self.pos2, self.pos3 = stage(p), stage(p), stage(heads)

    def __call__(self, offsets: jax.Array) -> jax.Array:
        return self.pos3(self.pos2(self.pos1(self.pos_proj(offsets))))

    def bias(self, offsets: np.ndarray, n: int, m: int) -> jax.Array:
        """The (heads, n, m) bias for constant (n*m, 2) offsets: one MLP run per forward."""
        pos = self(jnp.asarray(offsets, self.pos_proj.dtype or jnp.float32))
        return pos.reshape(n, m, -1).transpose(2, 0, 1)


class InnerPatchEmbed(nnx.Module):
    """Shortcut of a block: grouped 3x3 s2 conv (groups = C_in) + BN + GELU when it downsamples."""

    def __init__(self, cin: int, cout: int, down_sample: bool, *, dtype, rngs: nnx.Rngs):
        self.proj = nnx.data(
            Sequential(
                [
                    torch_conv2d(cin, cout, 3, stride=2, groups=cin, dtype=dtype, rngs=rngs),
                    layers.batch_norm(cout, dtype=dtype, rngs=rngs),
                    GELU(),
                ]
            )
            if down_sample
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        return x if self.proj is None else self.proj(x)


class DWMlp(nnx.Module):
    """1x1 conv, BN, GELU, depthwise 3x3 (stride 2 when downsampling), BN, GELU, 1x1 conv."""

    def __init__(self, cin: int, hidden: int, cout: int, stride: int, *, dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        self.fc1 = torch_conv2d(cin, hidden, 1, **kw)
        self.norm1 = layers.batch_norm(hidden, **kw)
        self.fc2 = torch_conv2d(hidden, hidden, 3, stride=stride, groups=hidden, **kw)
        self.norm2 = layers.batch_norm(hidden, **kw)
        self.fc3 = torch_conv2d(hidden, cout, 1, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        gelu = functools.partial(jax.nn.gelu, approximate=False)
        x = gelu(self.norm1(self.fc1(x)))
        x = gelu(self.norm2(self.fc2(x)))
        return self.fc3(x)


class GlobalAttention(nnx.Module):
    """`global_attn`: attention with an additive bias, then `proj` (its only parameters)."""

    def __init__(self, dim: int, heads: int, *, dtype, rngs: nnx.Rngs):
        self.heads = heads
        self.scale = (dim // heads) ** -0.5
        self.proj = dense(dim, dim, dtype=dtype, rngs=rngs)

    def __call__(self, q: jax.Array, k: jax.Array, v: jax.Array, bias: jax.Array) -> jax.Array:
        return self.proj(attention(q, k, v, self.heads, bias, self.scale))


def smoothing(dim: int, *, dtype, rngs: nnx.Rngs) -> Sequential:
    """1x1 C->C/4, BN, GELU, dense 3x3, BN, GELU, 1x1 C/4->C, BN (`spatial_smooth.0.*`)."""
    kw = dict(dtype=dtype, rngs=rngs)
    q = dim // 4
    return Sequential(
        [
            torch_conv2d(dim, q, 1, **kw),
            layers.batch_norm(q, **kw),
            GELU(),
            torch_conv2d(q, q, 3, **kw),
            layers.batch_norm(q, **kw),
            GELU(),
            torch_conv2d(q, dim, 1, **kw),
            layers.batch_norm(dim, **kw),
        ]
    )


class HLGBlock(nnx.Module):
    """`HLGLayers`: conv MLP (post-norm) on the shortcut, then local-global attention.

    Stages 1-3: smoothing, 7x7 local attention (k = q, no projection) in contiguous (even index)
    or dilated (odd index) windows, mean window tokens, global attention of every pixel to the
    window tokens. Stage 4: one global MHSA with the LayerNorm on its output.
    """

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
        dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.heads, self.dilated, self.global_only = heads, dilated, global_only
        self.window_tokens = "mean" if global_only else window_tokens
        self.scale = (dim // heads) ** -0.5
        if not global_only:
            self.aux_q = torch_conv2d(dim, dim, 3, groups=dim, **kw)
            self.norm0 = layer_norm(dim, **kw)
            self.h0_norm = layer_norm(dim, **kw)
            self.pos_local = DynamicPosBias(dim, heads, **kw)
            self.spatial_smooth = nnx.List([smoothing(dim, **kw)])
            if window_tokens == "dwconv":
                self.h0_conv = nnx.Conv(
                    dim,
                    dim,
                    (WINDOW, WINDOW),
                    strides=(WINDOW, WINDOW),
                    padding=((0, 0), (0, 0)),
                    feature_group_count=dim,
                    kernel_init=layers.torch_default_init,
                    bias_init=layers.torch_bias_init(WINDOW * WINDOW),
                    conv_general_dilated=layers.depthwise_conv_general_dilated,
                    dtype=dtype,
                    param_dtype=jnp.float32,
                    rngs=rngs,
                )
        self.down_proj = InnerPatchEmbed(cin, dim, down_sample, **kw)
        self.q = dense(dim, dim, **kw)
        self.k = dense(dim, dim, **kw)
        self.v = dense(dim, dim, **kw)
        self.pos_global = DynamicPosBias(dim, heads, **kw)
        self.global_attn = GlobalAttention(dim, heads, **kw)
        self.norm1 = layer_norm(dim, **kw)
        self.norm2 = layer_norm(dim, **kw)
        self.mlp = DWMlp(cin, 4 * cin, dim, 2 if down_sample else 1, **kw)
        self.drop_path = layers.DropPath(drop_path, ndim=4, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        x = self.down_proj(x) + self.drop_path(self.norm2(self.mlp(x)))
        b, h, w, c = x.shape
        if self.global_only:
            t = x.reshape(b, h * w, c)
            bias = self.pos_global.bias(grid_offsets(h), h * w, h * w)
            out = self.global_attn(self.q(t), self.k(t), self.v(t), bias)
            return x + self.drop_path(self.norm1(out).reshape(b, h, w, c))

        gelu = functools.partial(jax.nn.gelu, approximate=False)
        x, q, loc, g = self.local(gelu(x + self.spatial_smooth[0](x)))
        q = q + self.aux_q(self.norm1(loc))
        bias = self.pos_global.bias(global_offsets(h, w), h * w, g.shape[1])
        out = self.global_attn(q.reshape(b, h * w, c), self.k(g), self.v(g), bias)
        return x + self.drop_path(out.reshape(b, h, w, c))

    def local(self, s: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
        """Local step on the smoothed map s (B, H, W, C).

        Returns, as maps in raster order, s + local attention, the shared q and the local
        attention output, and the LayerNormed window means (B, nWin, C).
        """
        b, h, w, c = s.shape
        win = window_partition(s, self.dilated)  # (B * nWin, 49, C)
        u = self.norm0(win)
        q, v = self.q(u), self.v(u)
        bias = self.pos_local.bias(grid_offsets(WINDOW), WINDOW**2, WINDOW**2)
        loc = attention(q, q, v, self.heads, bias, self.scale)  # k = q, no output projection
        win = win + loc
        if self.window_tokens == "dwconv":  # token a * 7 + b is pixel (a, b) of its window
            g = self.h0_conv(win.reshape(-1, WINDOW, WINDOW, c))
        else:
            g = jnp.mean(win, axis=1)
        g = self.h0_norm(g.reshape(b, -1, c))
        unpart = functools.partial(window_unpartition, height=h, width=w, dilated=self.dilated)
        return unpart(win), unpart(q), unpart(loc), g


class HLG(layers.DenseHeadClassifier):
    """Conv stem (s0_conv), four stages (block1..block4), LayerNorm, mean over tokens, head."""

    def __init__(
        self,
        cfg: HLGConfig,
        *,
        num_classes: int = 1000,
        drop_path_rate: float | None = None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        rngs = layers.ParamKeys(rngs)
        kw = dict(dtype=dtype, rngs=rngs)
        self.dtype = dtype
        dpr = cfg.block_drop_path_rates(drop_path_rate)
        c1 = cfg.dims[0]
        self.s0_conv = nnx.List(
            [
                Sequential(
                    [
                        torch_conv2d(3, c1, 3, stride=2, bias=False, **kw),
                        layers.batch_norm(c1, **kw),
                        GELU(),
                    ]
                ),
                Sequential(
                    [torch_conv2d(c1, c1, 3, bias=False, **kw), layers.batch_norm(c1, **kw), GELU()]
                ),
            ]
        )
        cin, cur = c1, 0
        for stage, (dim, heads, depth) in enumerate(
            zip(cfg.dims, cfg.heads, cfg.depths, strict=True)
        ):
            blocks = []
            for i in range(depth):
                blocks.append(
                    HLGBlock(
                        cin if i == 0 else dim,
                        dim,
                        heads,
                        down_sample=i == 0,
                        dilated=i % 2 == 1,
                        global_only=stage == 3,
                        drop_path=dpr[cur + i],
                        window_tokens=cfg.window_tokens,
                        **kw,
                    )
                )
            setattr(self, f"block{stage + 1}", nnx.List(blocks))
            cin, cur = dim, cur + depth
        self.norm = layer_norm(cfg.dims[-1], **kw)
        self.num_classes, self.num_features = num_classes, cfg.dims[-1]
        self.head = dense(cfg.dims[-1], num_classes, **kw)

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, 224, 224, 3) -> pooled (B, num_features): LayerNorm, then the mean over tokens."""
        if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"HLG takes NHWC images of {INPUT_SIZE}x{INPUT_SIZE}x3 only (its stage-4 and global "
                f"position biases are built for that size); got shape {tuple(x.shape)}"
            )
        x = x.astype(self.dtype)
        for stem in self.s0_conv:
            x = stem(x)
        for blocks in (self.block1, self.block2, self.block3, self.block4):
            for block in blocks:
                x = block(x)
        x = self.norm(x)
        return jnp.mean(x, axis=(1, 2), dtype=jnp.float32).astype(x.dtype)


# --------------------------------------------------------------------------- registry
def _build(
    variant: str,
    *,
    num_classes: int = 1000,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
    drop_path_rate: float | None = None,
) -> HLG:
    return HLG(
        CONFIGS[variant],
        num_classes=num_classes,
        drop_path_rate=drop_path_rate,
        dtype=dtype,
        rngs=rngs,
    )


for _name in CONFIGS:
    register(_name, functools.partial(_build, _name))

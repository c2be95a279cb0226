"""HLG-mobile of the MindSpore model zoo (`hlg_mobile_zoo`) mirroring models/hlg_zoo.py.

The Flax model mirrors the zoo cell (mindspore-ai/models research/cv/hlg/src/hlg.py), and this
cell mirrors the Flax model attribute for attribute, so parameter names equal the zoo's
(`patch_embed1.conv1.weight`, `block1_0.attn.to_q.weight`, `pos_embed1`, `cls`, ...) and the
canonical keys up to the generic leaf rename. MindSpore defaults are written out: tanh GELU,
LayerNorm eps 1e-7, BN momentum 0.9. Unused branches (each PatchEmbed's other branch, stage-4
norm0/spatial_smooth) are built so that zoo checkpoints load strictly; they get no gradient.
"""

from __future__ import annotations

from mindspore import Parameter, nn, ops
from mindspore.common import initializer as init

from ascend_port.cells import layers
from ascend_port.cells.hlg import attention, nchw, nhwc, window_partition, window_unpartition
from models.hlg_arch import (
    WINDOW,
    ZOO_D_MODEL,
    ZOO_DIM_HEAD,
    ZOO_FEATURE_SIZES,
    ZOO_HEADS,
    ZOO_INPUT_SIZE,
    ZOO_LN_EPS,
    ZOO_MLP_RATIOS,
    ZOO_NAME,
    ZOO_NUM_CLASSES,
    zoo_drop_path_rates,
)

DENSE_INIT = init.TruncatedNormal(sigma=0.02)  # HLGConfig attention/feedforward/head init


def gelu() -> nn.GELU:
    return layers.gelu(approximate=True)  # the zoo's nn.GELU(): tanh


def layer_norm(dim: int) -> nn.LayerNorm:
    return layers.layer_norm(dim, eps=ZOO_LN_EPS)


def dense(cin: int, cout: int) -> nn.Dense:
    return layers.dense(cin, cout, weight_init=DENSE_INIT)


def conv(cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0) -> nn.Conv2d:
    """nn.Conv2d(pad_mode='pad', padding=p, has_bias=True, weight_init=HeUniform(sqrt(5)))."""
    return layers.conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        padding=padding,
        bias=True,
        weight_init=layers.TORCH_DEFAULT,
    )


class PatchEmbed(nn.Cell):
    """Both branches of the zoo's PatchEmbed; `kernel_size == 7` selects the 3-conv stack. NCHW."""

    def __init__(self, cin: int, d_model: int, kernel_size: int, patch_size: int):
        super().__init__()
        self.kernel_size = kernel_size
        self.conv1 = conv(cin, 32, 3, stride=2, padding=1)
        self.norm1 = layers.batch_norm(32)
        self.conv2 = conv(32, 32, 3, padding=1)
        self.norm2 = layers.batch_norm(32)
        self.conv3 = conv(32, d_model, 3, stride=2, padding=1)
        self.norm3 = layers.batch_norm(d_model)
        self.conv = conv(cin, d_model, kernel_size, stride=patch_size, padding=1)
        self.norm = layers.batch_norm(d_model)
        self.act = gelu()

    def construct(self, x):
        if self.kernel_size == 7:
            x = self.act(self.norm1(self.conv1(x)))
            x = self.act(self.norm2(self.conv2(x)))
            return self.act(self.norm3(self.conv3(x)))
        return self.act(self.norm(self.conv(x)))


class Attention(nn.Cell):
    """to_q/to_k/to_v/proj; self-attention, or queries of x against `context` (window tokens)."""

    def __init__(self, d_model: int, dim_head: int, heads: int):
        super().__init__()
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = dense(d_model, inner)
        self.to_k = dense(d_model, inner)
        self.to_v = dense(d_model, inner)
        self.proj = dense(inner, d_model)

    def construct(self, x, context=None):
        if context is None:
            context = x
        out = attention(
            self.to_q(x), self.to_k(context), self.to_v(context), self.heads, None, self.scale
        )
        return self.proj(out)


class FeedForward(nn.Cell):
    def __init__(self, d_model: int, mlp_ratio: int):
        super().__init__()
        self.ff1 = dense(d_model, d_model * mlp_ratio)
        self.ff2 = dense(d_model * mlp_ratio, d_model)
        self.act = gelu()

    def construct(self, x):
        return self.ff2(self.act(self.ff1(x)))


class Transformer(nn.Cell):
    """The zoo block on (B, N, C) tokens of a fixed H x W map (models.hlg_zoo.Transformer)."""

    def __init__(
        self,
        dim: int,
        heads: int,
        dim_head: int,
        mlp_ratio: int,
        drop_path: float,
        fea_size: int,
        *,
        dilated: bool,
        global_only: bool,
    ):
        super().__init__()
        self.size, self.dilated, self.global_only = fea_size, dilated, global_only
        self.norm0 = layer_norm(dim)
        self.norm1 = layer_norm(dim)
        self.norm2 = layer_norm(dim)
        self.attn = Attention(dim, dim_head, heads)
        self.mlp = FeedForward(dim, mlp_ratio)
        q = dim // 4
        self.spatial_smooth = nn.CellList(
            [
                nn.SequentialCell(
                    [
                        conv(dim, q, 1),
                        layers.batch_norm(q),
                        gelu(),
                        conv(q, q, 3, padding=1),
                        layers.batch_norm(q),
                        gelu(),
                        conv(q, dim, 1),
                        layers.batch_norm(dim),
                    ]
                )
            ]
        )
        # The zoo's DropPath draws one mask entry per leading row: per window in the local step.
        self.drop_path = layers.DropPath(drop_path)
        self.act = gelu()

    def construct(self, x):
        if not self.global_only:
            b, _, c = x.shape
            h = w = self.size
            s = ops.reshape(x, (b, h, w, c))
            s = self.act(s + nhwc(self.spatial_smooth[0](nchw(s))))
            win = window_partition(s, self.dilated)
            win = win + self.drop_path(self.attn(self.norm0(win)))
            g = ops.reshape(ops.mean(win, 1), (b, (h // WINDOW) * (w // WINDOW), c))
            x = ops.reshape(window_unpartition(win, h, w, self.dilated), (b, h * w, c))
            x = x + self.drop_path(self.attn(self.norm1(x), g))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class HLGZoo(layers.DenseHeadClassifier):
    """patch_embed1..4, pos_embed1..4, cls, block{s}_{0,1}, norm, head (the zoo's `HLG` cell)."""

    head_init = DENSE_INIT  # the zoo's TruncatedNormal(0.02)

    def __init__(self, *, num_classes: int = ZOO_NUM_CLASSES, drop_path_rate: float | None = None):
        super().__init__()
        dpr = zoo_drop_path_rates(drop_path_rate)
        normal = init.Normal(sigma=1.0)  # HLGConfig.network_init
        cin = 3
        for s, (dim, size) in enumerate(zip(ZOO_D_MODEL, ZOO_FEATURE_SIZES, strict=True)):
            first = s == 0
            setattr(
                self,
                f"patch_embed{s + 1}",
                PatchEmbed(cin, dim, 7 if first else 3, 4 if first else 2),
            )
            tokens = size * size + (1 if s == 3 else 0)
            name = f"pos_embed{s + 1}"
            setattr(self, name, Parameter(init.initializer(normal, (1, tokens, dim)), name=name))
            for i in range(2):
                setattr(
                    self,
                    f"block{s + 1}_{i}",
                    Transformer(
                        dim,
                        ZOO_HEADS[s],
                        ZOO_DIM_HEAD[s],
                        ZOO_MLP_RATIOS[s],
                        dpr[2 * s + i],
                        size,
                        dilated=i % 2 == 1,
                        global_only=s == 3,
                    ),
                )
            cin = dim
        # The zoo names this parameter 'cls' (attribute cls_token); so do the Flax model and we.
        self.cls = Parameter(init.initializer(normal, (1, 1, ZOO_D_MODEL[-1])), name="cls")
        self.norm = layer_norm(ZOO_D_MODEL[-1])
        self._init_head(ZOO_D_MODEL[-1], num_classes)

    def _stage(self, x, pos_embed, block0, block1, cls=None):
        """NCHW patch-embedded map -> tokens (+ cls) + position embedding -> two blocks."""
        b, c, h, w = x.shape
        t = ops.transpose(ops.reshape(x, (b, c, h * w)), (0, 2, 1))
        if cls is not None:
            t = ops.concat([ops.broadcast_to(cls.astype(t.dtype), (b, 1, c)), t], 1)
        t = t + pos_embed.astype(t.dtype)
        return block1(block0(t))

    def forward_features(self, x):
        """NCHW images (B, 3, 224, 224) -> (B, num_features): the normalised cls token."""
        if x.shape[1] != 3 or x.shape[2] != ZOO_INPUT_SIZE or x.shape[3] != ZOO_INPUT_SIZE:
            raise ValueError(
                "hlg_mobile_zoo takes (B, 3, 224, 224) images only (its position "
                "embeddings have fixed lengths)"
            )
        stages = (
            (self.patch_embed1, self.pos_embed1, self.block1_0, self.block1_1),
            (self.patch_embed2, self.pos_embed2, self.block2_0, self.block2_1),
            (self.patch_embed3, self.pos_embed3, self.block3_0, self.block3_1),
        )
        for patch_embed, pos_embed, block0, block1 in stages:
            x = patch_embed(x)
            b, c, h, w = x.shape
            t = self._stage(x, pos_embed, block0, block1)
            x = ops.reshape(ops.transpose(t, (0, 2, 1)), (b, c, h, w))
        x = self.patch_embed4(x)
        t = self._stage(x, self.pos_embed4, self.block4_0, self.block4_1, self.cls)
        return self.norm(t)[:, 0]


def build(
    name: str,
    *,
    num_classes: int = ZOO_NUM_CLASSES,
    drop_rate: float | None = None,
    drop_path_rate: float | None = None,
) -> HLGZoo:
    """The zoo HLG-mobile cell; it has no classifier dropout, so `drop_rate` must be unset."""
    if name != ZOO_NAME:
        raise KeyError(f"{name!r} is not {ZOO_NAME!r}")
    if drop_rate:
        raise ValueError(f"{name} has no classifier dropout (drop_rate={drop_rate})")
    return HLGZoo(num_classes=num_classes, drop_path_rate=drop_path_rate)

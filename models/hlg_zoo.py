"""HLG-mobile of the MindSpore model zoo (mindspore-ai/models research/cv/hlg/src/hlg.py).

Not the official HLG (models/hlg.py): a ViT-style network that shares the name, with conv patch
embeddings (with bias), learned absolute position embeddings, a cls token, one attention module
shared by the local (window) and global steps, a Dense MLP, tanh GELU and LayerNorm eps 1e-7
(MindSpore defaults). Registered as `hlg_mobile_zoo`, 1001
classes by default (the zoo's class_num).

Names. The module tree mirrors the MindSpore cell attribute for attribute, so a canonical key is
the MindSpore parameter name with the generic leaf rename (weight -> kernel, gamma -> scale,
beta -> bias, moving_mean -> mean, moving_variance -> var) and the generic layout transform; the
position embeddings (`pos_embed1..4`) and the cls token keep name and shape. No per-model table.
The zoo creates the cls token as `self.cls_token = Parameter(..., name='cls')`: checkpoints store
it as 'cls' (MindSpore 2.10's parameters_and_names() says 'cls_token'), so our attribute is `cls`
and a mirroring cell should use `self.cls = Parameter(..., name='cls')`.

Unused branches are built. Each PatchEmbed holds both of its branches (stage 1 runs the 3-conv
stack, stages 2-4 the single conv) and the stage-4 blocks hold `norm0` and `spatial_smooth`,
which their forward never runs. The zoo checkpoints store all of them, so keeping them as
parameters lets those checkpoints load strictly: 6,767,816 parameters at 1000 classes (6,768,201
at the zoo's 1001), of which 6,147,272 (6,147,657) are used. They get no gradient; weight decay
shrinks them, as it does in the zoo.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
from flax import nnx

from models import layers
from models.hlg import WINDOW, window_partition, window_unpartition
from models.hlg_arch import ZOO_D_MODEL as D_MODEL
from models.hlg_arch import ZOO_DIM_HEAD as DIM_HEAD
from models.hlg_arch import ZOO_FEATURE_SIZES as FEATURE_SIZES
from models.hlg_arch import ZOO_HEADS as HEADS
from models.hlg_arch import ZOO_INPUT_SIZE as INPUT_SIZE
from models.hlg_arch import ZOO_LN_EPS as LN_EPS
from models.hlg_arch import ZOO_MLP_RATIOS as MLP_RATIOS
from models.hlg_arch import zoo_drop_path_rates
from models.layers import GELU, Sequential, attention, dense, layer_norm
from models.registry import register

gelu_tanh = functools.partial(jax.nn.gelu, approximate=True)  # MindSpore nn.GELU() default


def conv(
    cin: int, cout: int, kernel: int, *, stride: int = 1, padding: int = 0, dtype, rngs: nnx.Rngs
) -> nnx.Conv:
    """nn.Conv2d(pad_mode='pad', padding=p, has_bias=True, weight_init=HeUniform(sqrt(5))).

    HeUniform(sqrt(5)) is U(+-1/sqrt(fan_in)), PyTorch's default. Biases start at zero, the
    MindSpore default when the zoo was written (1.8); 2.x draws them U(+-1/sqrt(fan_in)).
    """
    return layers.conv2d(
        cin,
        cout,
        kernel,
        stride=stride,
        padding=padding,
        bias=True,
        kernel_init=layers.torch_default_init,
        dtype=dtype,
        rngs=rngs,
    )


class PatchEmbed(nnx.Module):
    """Both branches of the zoo's PatchEmbed; `kernel_size == 7` selects the 3-conv stack."""

    def __init__(
        self, cin: int, d_model: int, kernel_size: int, patch_size: int, *, dtype, rngs: nnx.Rngs
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.kernel_size = kernel_size
        self.conv1 = conv(cin, 32, 3, stride=2, padding=1, **kw)
        self.norm1 = layers.batch_norm(32, **kw)
        self.conv2 = conv(32, 32, 3, padding=1, **kw)
        self.norm2 = layers.batch_norm(32, **kw)
        self.conv3 = conv(32, d_model, 3, stride=2, padding=1, **kw)
        self.norm3 = layers.batch_norm(d_model, **kw)
        self.conv = conv(cin, d_model, kernel_size, stride=patch_size, padding=1, **kw)
        self.norm = layers.batch_norm(d_model, **kw)

    def __call__(self, x: jax.Array) -> jax.Array:
        if self.kernel_size == 7:
            x = gelu_tanh(self.norm1(self.conv1(x)))
            x = gelu_tanh(self.norm2(self.conv2(x)))
            return gelu_tanh(self.norm3(self.conv3(x)))
        return gelu_tanh(self.norm(self.conv(x)))


class Attention(nnx.Module):
    """to_q/to_k/to_v/proj; self-attention, or queries of x against a `context` (window tokens)."""

    def __init__(self, d_model: int, dim_head: int, heads: int, *, dtype, rngs: nnx.Rngs):
        kw = dict(dtype=dtype, rngs=rngs)
        inner = heads * dim_head
        self.heads, self.scale = heads, dim_head**-0.5
        self.to_q = dense(d_model, inner, **kw)
        self.to_k = dense(d_model, inner, **kw)
        self.to_v = dense(d_model, inner, **kw)
        self.proj = dense(inner, d_model, **kw)

    def __call__(self, x: jax.Array, context: jax.Array | None = None) -> jax.Array:
        context = x if context is None else context
        out = attention(
            self.to_q(x), self.to_k(context), self.to_v(context), self.heads, None, self.scale
        )
        return self.proj(out)


class FeedForward(nnx.Module):
    def __init__(self, d_model: int, mlp_ratio: int, *, dtype, rngs: nnx.Rngs):
        self.ff1 = dense(d_model, d_model * mlp_ratio, dtype=dtype, rngs=rngs)
        self.ff2 = dense(d_model * mlp_ratio, d_model, dtype=dtype, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        return self.ff2(gelu_tanh(self.ff1(x)))


class Transformer(nnx.Module):
    """The zoo block on (B, N, C) tokens of an H x W map (fixed per stage).

    Stages 1-3: smoothing, window self-attention (contiguous for even, dilated for odd blocks),
    window means (no norm) as keys/values of a global step with the same Attention, Dense MLP.
    Stage 4: a pre-norm ViT block on cls + 49 tokens.
    """

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
        dtype,
        rngs: nnx.Rngs,
    ):
        kw = dict(dtype=dtype, rngs=rngs)
        self.size, self.dilated, self.global_only = fea_size, dilated, global_only
        self.norm0 = layer_norm(dim, eps=LN_EPS, **kw)
        self.norm1 = layer_norm(dim, eps=LN_EPS, **kw)
        self.norm2 = layer_norm(dim, eps=LN_EPS, **kw)
        self.attn = Attention(dim, dim_head, heads, **kw)
        self.mlp = FeedForward(dim, mlp_ratio, **kw)
        q = dim // 4
        self.spatial_smooth = nnx.List(
            [
                Sequential(
                    [
                        conv(dim, q, 1, **kw),
                        layers.batch_norm(q, **kw),
                        GELU(approximate=True),
                        conv(q, q, 3, padding=1, **kw),
                        layers.batch_norm(q, **kw),
                        GELU(approximate=True),
                        conv(q, dim, 1, **kw),
                        layers.batch_norm(dim, **kw),
                    ]
                )
            ]
        )
        # The zoo's DropPath draws one mask entry per leading row: per window in the local step.
        self.drop_path = layers.DropPath(drop_path, ndim=3, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        if not self.global_only:
            b, _, c = x.shape
            h = w = self.size
            s = x.reshape(b, h, w, c)
            s = gelu_tanh(s + self.spatial_smooth[0](s))
            win = window_partition(s, self.dilated)
            win = win + self.drop_path(self.attn(self.norm0(win)))
            g = jnp.mean(win, axis=1).reshape(b, (h // WINDOW) * (w // WINDOW), c)
            x = window_unpartition(win, h, w, self.dilated).reshape(b, h * w, c)
            x = x + self.drop_path(self.attn(self.norm1(x), g))
        else:
            x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


class HLGZoo(layers.DenseHeadClassifier):
    """patch_embed1..4, pos_embed1..4, cls, block{s}_{0,1}, norm, head (the zoo's `HLG` cell)."""

    def __init__(
        self,
        *,
        num_classes: int = 1001,
        drop_path_rate: float | None = None,
        dtype=jnp.float32,
        rngs: nnx.Rngs,
    ):
        rngs = layers.ParamKeys(rngs)
        kw = dict(dtype=dtype, rngs=rngs)
        self.dtype = dtype
        dpr = zoo_drop_path_rates(drop_path_rate)
        normal = nnx.initializers.normal(stddev=1.0)  # HLGConfig.network_init
        cin = 3
        for s, (dim, size) in enumerate(zip(D_MODEL, FEATURE_SIZES, strict=True)):
            first = s == 0
            setattr(
                self,
                f"patch_embed{s + 1}",
                PatchEmbed(cin, dim, 7 if first else 3, 4 if first else 2, **kw),
            )
            tokens = size * size + (1 if s == 3 else 0)
            setattr(
                self,
                f"pos_embed{s + 1}",
                nnx.Param(normal(rngs.params(), (1, tokens, dim), jnp.float32)),
            )
            for i in range(2):
                setattr(
                    self,
                    f"block{s + 1}_{i}",
                    Transformer(
                        dim,
                        HEADS[s],
                        DIM_HEAD[s],
                        MLP_RATIOS[s],
                        dpr[2 * s + i],
                        size,
                        dilated=i % 2 == 1,
                        global_only=s == 3,
                        **kw,
                    ),
                )
            cin = dim
        self.cls = nnx.Param(normal(rngs.params(), (1, 1, D_MODEL[-1]), jnp.float32))
        self.norm = layer_norm(D_MODEL[-1], eps=LN_EPS, **kw)
        self.num_classes, self.num_features = num_classes, D_MODEL[-1]
        self.head = dense(D_MODEL[-1], num_classes, **kw)

    def forward_features(self, x: jax.Array) -> jax.Array:
        """(B, 224, 224, 3) -> (B, num_features): the normalised cls token."""
        if x.ndim != 4 or x.shape[1:] != (INPUT_SIZE, INPUT_SIZE, 3):
            raise ValueError(
                f"hlg_mobile_zoo takes NHWC images of {INPUT_SIZE}x{INPUT_SIZE}x3 only (its "
                f"position embeddings have fixed lengths); got shape {tuple(x.shape)}"
            )
        x = x.astype(self.dtype)
        b = x.shape[0]
        for s in range(4):
            x = getattr(self, f"patch_embed{s + 1}")(x)
            _, h, w, c = x.shape
            t = x.reshape(b, h * w, c)
            if s == 3:
                cls = jnp.broadcast_to(self.cls[...].astype(t.dtype), (b, 1, c))
                t = jnp.concatenate([cls, t], axis=1)
            t = t + getattr(self, f"pos_embed{s + 1}")[...].astype(t.dtype)
            for i in range(2):
                t = getattr(self, f"block{s + 1}_{i}")(t)
            if s < 3:
                x = t.reshape(b, h, w, c)
        return self.norm(t)[:, 0]


def _build(
    *,
    num_classes: int = 1001,
    dtype=jnp.float32,
    rngs: nnx.Rngs,
    drop_path_rate: float | None = None,
) -> HLGZoo:
    return HLGZoo(num_classes=num_classes, drop_path_rate=drop_path_rate, dtype=dtype, rngs=rngs)


register("hlg_mobile_zoo", _build)

"""HLG invariants (official models/hlg.py and the zoo's models/hlg_zoo.py).

Shapes, gradients and parameter counts of every variant are in test_models.py. Logit parity with
the official PyTorch code needs a repaired copy of that file (it does not build as released),
which is not in this repository; it was checked by hand. The MindSpore cells are compared with
these models in test_ascend_port.py.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

import models
from models import hlg, layout, registry, torch_import, weights
from tests.torch_utils import official_state_dict


@functools.cache
def _abstract(name: str, **kwargs) -> nnx.Module:
    """Shapes only (no arrays): names, counts and input checks at no compile cost."""
    return registry.abstract(name, **kwargs)


def _coords(batch: int, h: int, w: int) -> np.ndarray:
    """A (B, H, W, 3) map whose pixel holds (image, row, column)."""
    b, r, c = np.meshgrid(np.arange(batch), np.arange(h), np.arange(w), indexing="ij")
    return np.stack([b, r, c], axis=-1).astype(np.float32)


@pytest.mark.parametrize("dilated", [False, True])
@pytest.mark.parametrize("size", [56, 28, 14, 7])
def test_partition_then_unpartition_is_identity(dilated, size):
    x = np.random.default_rng(0).standard_normal((2, size, size, 5)).astype(np.float32)
    win = hlg.window_partition(jnp.asarray(x), dilated)
    assert win.shape == (2 * (size // 7) ** 2, 49, 5)
    np.testing.assert_array_equal(np.asarray(hlg.window_unpartition(win, size, size, dilated)), x)


@pytest.mark.parametrize("dilated", [False, True])
def test_windows_hold_the_right_pixels(dilated):
    """Window p*nW+q of image n, token a*7+b: rows a*nH+p / cols b*nW+q (dilated), else 7p+a."""
    batch, h, w = 2, 28, 21  # non-square on purpose: nH = 4, nW = 3
    win = np.asarray(hlg.window_partition(jnp.asarray(_coords(batch, h, w)), dilated))
    nh, nw = h // 7, w // 7
    for n in range(batch):
        for p in range(nh):
            for q in range(nw):
                tokens = win[(n * nh + p) * nw + q]
                for a in range(7):
                    for b in range(7):
                        row, col = (a * nh + p, b * nw + q) if dilated else (7 * p + a, 7 * q + b)
                        np.testing.assert_array_equal(tokens[a * 7 + b], [n, row, col])


def _official_table_offsets(h: int) -> np.ndarray:
    """The offsets the official global bias uses, rebuilt the way its code does it: the
    (2h-1)^2 offset table, the h^2 x h^2 relative index on the h x h grid, first (h/7)^2 columns."""
    span = np.arange(1 - h, h)
    table = np.stack(np.meshgrid(span, span, indexing="ij")).reshape(2, -1).T  # (dy, dx)
    coords = np.stack(np.meshgrid(np.arange(h), np.arange(h), indexing="ij")).reshape(2, -1)
    rel = (coords[:, :, None] - coords[:, None, :]).transpose(1, 2, 0) + (h - 1)
    index = rel[..., 0] * (2 * h - 1) + rel[..., 1]
    keep = (h // 7) ** 2
    return table[index[:, :keep]].reshape(-1, 2)


@pytest.mark.parametrize("size", [56, 28, 14])
def test_global_offsets_copy_the_official_quirk(size):
    off = hlg.global_offsets(size, size)
    num_windows = (size // 7) ** 2
    assert off.shape == (size * size * num_windows, 2)
    np.testing.assert_array_equal(off, _official_table_offsets(size))
    # Key m sits at divmod(m, H), not at its window: query pixel (0, 0) sees keys on row 0
    # (and row 1 once m >= H).
    first = off.reshape(size * size, num_windows, 2)[0]
    rows, cols = np.divmod(np.arange(num_windows), size)
    np.testing.assert_array_equal(first, np.stack([-rows, -cols], axis=-1))


def test_dpb_on_offsets_equals_the_table_lookup():
    """Running the DPB on every offset equals running it on the (2H-1)^2 table and indexing."""
    dpb = hlg.DynamicPosBias(64, 4, dtype=jnp.float32, rngs=nnx.Rngs(0))
    h = 14
    direct = np.asarray(dpb(jnp.asarray(hlg.global_offsets(h, h))))
    span = np.arange(1 - h, h, dtype=np.float32)
    table = np.stack(np.meshgrid(span, span, indexing="ij")).reshape(2, -1).T
    pos = np.asarray(dpb(jnp.asarray(table)))
    looked_up = pos[((hlg.global_offsets(h, h) + h - 1) @ np.array([2 * h - 1, 1])).astype(int)]
    np.testing.assert_allclose(direct, looked_up, rtol=0, atol=1e-6)
    local = hlg.grid_offsets(7).reshape(49, 49, 2)
    np.testing.assert_array_equal(local[8, 0], [1, 1])  # token 8 = (1, 1) minus token 0


def _small_block(dilated: bool, **kwargs) -> hlg.HLGBlock:
    """One 16-channel, 2-head HLG block in eval mode (no down-sampling, no drop-path)."""
    block = hlg.HLGBlock(
        16,
        16,
        2,
        down_sample=False,
        dilated=dilated,
        global_only=False,
        drop_path=0.0,
        dtype=jnp.float32,
        rngs=nnx.Rngs(0),
        **kwargs,
    )
    block.eval()
    return block


@pytest.mark.parametrize("dilated", [False, True])
def test_local_attention_sees_only_its_window(dilated):
    block = _small_block(dilated)
    size, pixel = 14, (5, 9)
    s = jax.random.normal(jax.random.key(1), (1, size, size, 16))

    def local_out(s):
        _, _, loc, _ = block.local(s)
        return loc[0, pixel[0], pixel[1]]

    jac = np.asarray(jax.jit(jax.jacobian(local_out))(s))  # (16, 1, H, W, 16)
    depends = np.abs(jac).sum(axis=(0, 1, 4)) > 0
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    if dilated:  # stride nH = 2: the window of pixels with the same parity
        window = (rows % 2 == pixel[0] % 2) & (cols % 2 == pixel[1] % 2)
    else:
        window = (rows // 7 == pixel[0] // 7) & (cols // 7 == pixel[1] // 7)
    np.testing.assert_array_equal(depends, window)


def test_block_is_deterministic_in_eval_and_drops_paths_in_train():
    block = hlg.HLGBlock(
        16,
        32,
        2,
        down_sample=True,
        dilated=False,
        global_only=False,
        drop_path=0.5,
        dtype=jnp.float32,
        rngs=nnx.Rngs(0),
    )
    x = jax.random.normal(jax.random.key(2), (4, 28, 28, 16))
    forward = nnx.jit(lambda block, x: block(x))
    block.eval()
    np.testing.assert_array_equal(np.asarray(forward(block, x)), np.asarray(forward(block, x)))
    block.train()
    assert not np.array_equal(np.asarray(forward(block, x)), np.asarray(forward(block, x)))


def test_drop_path_schedule_and_module_names():
    model = _abstract("hlg_mobile")
    rates = [b.drop_path.rate for s in (1, 2, 3, 4) for b in getattr(model, f"block{s}")]
    np.testing.assert_allclose(rates, np.linspace(0, 0.1, 8))  # mobile default: config.py's 0.1
    assert [b.dilated for s in (1, 2, 3) for b in getattr(model, f"block{s}")] == [False, True] * 3
    keys = set(weights.shapes(model))
    # A few official PyTorch keys (spec 4.1) and where the generic rules put them.
    for torch_key, ndim in [
        ("s0_conv.0.0.weight", 4),
        ("s0_conv.1.1.running_var", 1),
        ("block1.0.down_proj.proj.0.bias", 1),
        ("block1.0.mlp.fc1.weight", 4),
        ("block1.0.spatial_smooth.0.3.weight", 4),
        ("block1.0.pos_global.pos1.0.weight", 1),
        ("block3.1.pos_local.pos3.2.weight", 2),
        ("block2.1.aux_q.weight", 4),
        ("block4.1.global_attn.proj.weight", 2),
        ("norm.weight", 1),
        ("head.weight", 2),
    ]:
        module, leaf = layout.split_key(torch_key)
        assert f"{module}.{layout.torch_leaf_to_canonical(leaf, ndim)}" in keys, torch_key
    assert not any(k.startswith(("block4.0.norm0", "block4.0.spatial_smooth")) for k in keys)
    assert not any(k.startswith("block1.1.down_proj") for k in keys)


def test_official_state_dict_converts_with_identity_rename():
    """A PyTorch-named, PyTorch-laid-out state dict (EMA-wrapped) maps onto every model key."""
    model = _abstract("hlg_mobile")
    rng = np.random.default_rng(0)
    canonical = {
        k: rng.standard_normal(s).astype(np.float32) for k, s in weights.shapes(model).items()
    }
    sd = official_state_dict(canonical)
    assert len(sd) == 626  # the official mobile state dict, buffers included
    flat = torch_import.torch_to_canonical("hlg_mobile", {"model_ema": sd})
    assert flat.keys() == canonical.keys()
    for key in canonical:
        np.testing.assert_array_equal(flat[key], canonical[key])


def test_hlg_rejects_other_input_sizes():
    with pytest.raises(ValueError, match="224x224"):
        _abstract("hlg_mobile")(jnp.zeros((1, 192, 192, 3)))
    with pytest.raises(ValueError, match="224x224"):
        _abstract("hlg_mobile_zoo")(jnp.zeros((1, 256, 256, 3)))


# MindSpore parameter names of the zoo checkpoint (spec 4.2) -> canonical, by the generic leaf rule.
_MS_LEAVES = {"gamma": "scale", "beta": "bias", "moving_mean": "mean", "moving_variance": "var"}


def test_zoo_names_follow_mindspore_with_generic_leaf_rule():
    keys = set(weights.shapes(_abstract("hlg_mobile_zoo")))
    assert len(keys) == 393  # every stored parameter of the zoo checkpoint
    for ms_name, ndim in [
        ("patch_embed1.conv1.weight", 4),
        ("patch_embed1.norm1.moving_mean", 1),
        ("patch_embed1.conv.weight", 4),
        ("patch_embed3.norm.gamma", 1),
        ("pos_embed1", 3),
        ("pos_embed4", 3),
        ("cls", 3),
        ("block1_0.attn.to_q.weight", 2),
        ("block2_1.mlp.ff2.bias", 1),
        ("block1_1.spatial_smooth.0.4.moving_variance", 1),
        ("block4_1.norm0.beta", 1),
        ("norm.gamma", 1),
        ("head.weight", 2),
    ]:
        module, _, leaf = ms_name.rpartition(".")
        leaf = "kernel" if leaf == "weight" else _MS_LEAVES.get(leaf, leaf)
        assert (f"{module}.{leaf}" if module else leaf) in keys, (ms_name, ndim)


def test_zoo_with_another_class_count():
    """The zoo's default is 1001 classes; another count changes only the head (a real forward
    at 7 classes runs in test_models.py)."""
    info = models.info("hlg_mobile_zoo")
    assert info.default_num_classes == 1001
    model = _abstract("hlg_mobile_zoo", num_classes=10)
    assert model.head.kernel.shape == (384, 10)
    assert registry.count_params(model) == info.num_params - 385 * 1000 + 385 * 10
    assert registry.count_params(_abstract("hlg_mobile_zoo")) == 6_768_201  # the zoo checkpoint
    graphdef, state = nnx.split(model)
    out = jax.eval_shape(
        lambda s, x: nnx.merge(graphdef, s)(x),
        state,
        jax.ShapeDtypeStruct((2, 224, 224, 3), jnp.float32),
    )
    assert out.shape == (2, 10) and out.dtype == jnp.float32


@pytest.mark.parametrize("dilated", [False, True])
def test_dwconv_window_tokens_follow_the_official_h0_conv(dilated):
    """hlg_tiny_dwconv: each window's global token is the official
    `h0_conv(h1_x.transpose(1, 2).reshape(N, C, 7, 7))` (depthwise 7x7, stride 7, bias),
    computed here with torch on the windows our block forms, from the same weights."""
    import torch

    block = _small_block(dilated, window_tokens="dwconv")
    s = jax.random.normal(jax.random.key(3), (2, 14, 14, 16))
    win_map, _, _, g = nnx.jit(lambda b, s: b.local(s))(block, s)
    win = np.asarray(hlg.window_partition(win_map, dilated))  # (N, 49, C), N = 2 * 4
    weight = layout.from_flax_layout(np.asarray(block.h0_conv.kernel[...]))  # (C, 1, 7, 7)
    x = torch.from_numpy(win).transpose(1, 2).reshape(win.shape[0], 16, 7, 7)
    tokens = torch.nn.functional.conv2d(
        x,
        torch.from_numpy(weight),
        torch.from_numpy(np.asarray(block.h0_conv.bias[...])),
        stride=7,
        groups=16,
    ).reshape(2, 4, 16)
    expected = nnx.jit(lambda b, t: b.h0_norm(t))(block, jnp.asarray(tokens.numpy()))
    np.testing.assert_allclose(np.asarray(g), np.asarray(expected), atol=1e-5, rtol=1e-5)
    assert weight.shape == (16, 1, 7, 7)


def test_dwconv_variant_adds_only_h0_conv():
    tiny, dw = weights.shapes(_abstract("hlg_tiny")), weights.shapes(_abstract("hlg_tiny_dwconv"))
    extra = sorted(set(dw) - set(tiny))
    assert set(tiny) <= set(dw) and all(k.split(".")[2] == "h0_conv" for k in extra)
    # stages 1-3 (2 + 2 + 6 blocks) each hold one depthwise 7x7 conv with bias
    assert (
        len(extra) == 2 * 10 and registry.count_params(_abstract("hlg_tiny_dwconv")) == 11_131_824
    )

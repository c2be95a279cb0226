"""models.layers.depthwise_conv_general_dilated against XLA's grouped convolution: values and
gradients, for every form the models use (HarDNet's 3x3 depthwise convs, HLG's 3x3 smoothing
and its 7x7 stride-7 window tokens) and the edges of each path."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from models import layers

# (input H, W, channels, kernel, stride, padding, channel multiplier)
CASES = {
    "3x3 same": (9, 11, 6, 3, 1, 1, 1),
    "3x3 stride 2": (9, 10, 4, 3, 2, 1, 1),
    "multiplier 2": (8, 8, 3, 3, 1, 1, 2),
    "7x7 stride 7 windows": (14, 21, 5, 7, 7, 0, 1),
    "7x7 stride 7, a partial last window": (15, 16, 5, 7, 7, 0, 1),
    "2x3 stride 2x3 windows": (6, 9, 4, (2, 3), (2, 3), 0, 1),
    "windows with padding": (12, 12, 4, 3, 3, 1, 1),
}


def _pair(v) -> tuple[int, int]:
    return (v, v) if isinstance(v, int) else v


@pytest.mark.parametrize("case", CASES)
def test_matches_xla_grouped_convolution(case):
    h, w, c, kernel, stride, pad, multiplier = CASES[case]
    kh, kw = _pair(kernel)
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.standard_normal((2, h, w, c)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((kh, kw, 1, c * multiplier)), jnp.float32)
    args = dict(
        window_strides=_pair(stride),
        padding=((pad, pad), (pad, pad)),
        dimension_numbers=("NHWC", "HWIO", "NHWC"),
        feature_group_count=c,
    )

    def loss(conv, x, k):
        y = conv(x, k, **args)
        return (y * y).sum(), y  # its gradient weighs every output by itself

    (_, ours), ours_grads = jax.value_and_grad(
        lambda x, k: loss(layers.depthwise_conv_general_dilated, x, k), (0, 1), has_aux=True
    )(x, k)
    (_, xla), xla_grads = jax.value_and_grad(
        lambda x, k: loss(jax.lax.conv_general_dilated, x, k), (0, 1), has_aux=True
    )(x, k)
    assert ours.shape == xla.shape
    np.testing.assert_allclose(ours, xla, rtol=1e-5, atol=1e-5)
    for a, b in zip(ours_grads, xla_grads, strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)

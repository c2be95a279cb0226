"""layers.max_pool: PyTorch's values and gradients, including the first-maximum rule on ties."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch

from models import layers


@pytest.mark.parametrize(
    ("window", "stride", "padding", "size"),
    [
        (3, 2, 1, (9, 10)),
        (3, 2, 1, (8, 8)),
        (2, 2, 0, (8, 9)),
        (2, 2, 0, (7, 7)),
        (3, 1, 1, (5, 6)),
    ],
)
def test_values_and_gradients_match_torch_with_ties(window, stride, padding, size):
    rng = np.random.default_rng(0)
    # Small integers clipped to [0, 2]: most windows hold several equal maxima, as ReLU6 maps do.
    x = np.clip(rng.integers(-3, 4, (2, *size, 3)), 0, 2).astype(np.float32)
    out, vjp = jax.vjp(lambda v: layers.max_pool(v, window, stride, padding), jnp.asarray(x))
    g = rng.standard_normal(out.shape).astype(np.float32)
    (dx,) = vjp(jnp.asarray(g))

    xt = torch.from_numpy(x.transpose(0, 3, 1, 2).copy()).requires_grad_(True)
    ot = torch.nn.functional.max_pool2d(xt, window, stride, padding)
    ot.backward(torch.from_numpy(g.transpose(0, 3, 1, 2).copy()))
    np.testing.assert_array_equal(np.asarray(out), ot.detach().numpy().transpose(0, 2, 3, 1))
    # Overlapping windows add several contributions per input: summation order differs.
    np.testing.assert_allclose(
        np.asarray(dx), xt.grad.numpy().transpose(0, 2, 3, 1), rtol=0, atol=1e-6
    )

"""models.layers.BatchNorm in train mode: the same outputs and running statistics as
nnx.BatchNorm, and gradients (its own backward) equal to autodiff through nnx.BatchNorm."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import layers


def _pair(dtype, fast_variance: bool):
    kw = dict(momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32)
    kw["use_fast_variance"] = fast_variance
    ours = layers.BatchNorm(6, **kw, rngs=nnx.Rngs(0))
    theirs = nnx.BatchNorm(6, **kw, rngs=nnx.Rngs(0))
    for bn in (ours, theirs):  # non-trivial affine parameters
        bn.scale.set_value(jnp.linspace(0.5, 1.5, 6))
        bn.bias.set_value(jnp.linspace(-0.2, 0.3, 6))
    return ours, theirs


def _loss_and_grads(bn, x, weights):
    graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

    def loss(params, x):
        model = nnx.merge(graphdef, params, stats, copy=True)
        model.train()
        y = model(x)
        new_stats = nnx.state(model, nnx.BatchStat)
        return jnp.sum(jnp.tanh(y.astype(jnp.float32)) * weights), (y, new_stats)

    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x)


@pytest.mark.parametrize(
    "dtype,fast_variance,tol",
    [(jnp.float32, False, 2e-5), (jnp.float32, True, 2e-5), (jnp.bfloat16, False, 2e-2)],
    ids=["float32", "float32-fast-variance", "bfloat16"],
)
def test_train_mode_matches_nnx_batch_norm(dtype, fast_variance, tol):
    rng = np.random.default_rng(0)
    # An offset mean and uneven spread per channel, as late feature maps have.
    x = (rng.normal(size=(4, 9, 7, 6)) * np.linspace(0.5, 3, 6) + 2.0).astype(np.float32)
    x = jnp.asarray(x, dtype)
    weights = jnp.asarray(rng.normal(size=(4, 9, 7, 6)), jnp.float32)
    ours, theirs = _pair(dtype, fast_variance)
    (loss_a, (y_a, stats_a)), grads_a = _loss_and_grads(ours, x, weights)
    (loss_b, (y_b, stats_b)), grads_b = _loss_and_grads(theirs, x, weights)
    # Forward and running statistics: nnx's own helpers on the same inputs, so bitwise equal.
    # (The running variance differs by design: ours averages the unbiased batch variance.)
    np.testing.assert_array_equal(np.asarray(y_a, np.float32), np.asarray(y_b, np.float32))
    np.testing.assert_array_equal(stats_a["mean"][...], stats_b["mean"][...])
    n = 4 * 9 * 7
    biased = (stats_a["var"][...] - 0.9) / 0.1 * (n - 1) / n  # back out the batch variance
    np.testing.assert_allclose(biased, (stats_b["var"][...] - 0.9) / 0.1, rtol=1e-5)
    assert loss_a == loss_b
    for name, a, b in [
        ("scale", grads_a[0]["scale"][...], grads_b[0]["scale"][...]),
        ("bias", grads_a[0]["bias"][...], grads_b[0]["bias"][...]),
        ("x", grads_a[1], grads_b[1]),
    ]:
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        assert a.dtype == b.dtype and a.shape == b.shape, name
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max(), err_msg=name)


def test_backward_is_the_custom_one():
    # The gradient must come from models.layers' backward, not from autodiff of the forward:
    # the train-mode forward is a custom_vjp call (nnx.BatchNorm's is not), which jax.grad
    # differentiates with the rule given, never through the forward.
    for bn, expected in zip(_pair(jnp.float32, False), (True, False), strict=True):
        graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

        def loss(x, graphdef=graphdef, params=params, stats=stats):
            model = nnx.merge(graphdef, params, stats, copy=True)
            model.train()
            return model(x).sum()

        jaxpr = str(jax.make_jaxpr(loss)(jnp.ones((2, 3, 3, 6))))
        assert ("custom_vjp_call" in jaxpr) == expected

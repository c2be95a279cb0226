"""Train-mode BatchNorm on large CPU maps sums per channel through a matvec
(models.layers._channel_sums): the same statistics, outputs and gradients as nnx.BatchNorm's
reductions up to float32 rounding, as close to float64 as they are, and only above the row
threshold (smaller maps keep nnx's reductions bit for bit: tests/test_batch_norm.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import layers
from tests import test_batch_norm as bn_cases  # its _pair, _loss_fn, _loss_and_grads, _inputs

# 8 x 24 x 24 = 4608 rows: above the threshold, small enough to run in a second.
SHAPE = (8, 24, 24, 6)


def test_threshold_selects_the_matvec():
    rows = layers.MATVEC_SUM_MIN_ROWS
    assert layers._matvec_sums((1, rows, 1, 5), (0, 1, 2), (3,))
    assert not layers._matvec_sums((1, rows - 1, 1, 5), (0, 1, 2), (3,))
    assert not layers._matvec_sums((5, 1, rows, 1), (1, 2, 3), (0,))  # channels first: no


def test_channel_sums_match_float64():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 56, 56, 48)) * np.linspace(0.1, 10, 48) + 3.0
    got = np.asarray(layers._channel_sums(jnp.asarray(x, jnp.float32)), np.float64)
    want = x.astype(np.float32).astype(np.float64).sum((0, 1, 2))
    # float32 rounding of a 25088-term sum (measured 2.5e-8 of the largest sum).
    assert np.abs(got - want).max() / np.abs(want).max() < 3e-7
    odd = jnp.asarray(x[:3, :7, :5], jnp.float32)  # no power-of-two sizes; 2-D input too
    np.testing.assert_allclose(layers._channel_sums(odd), odd.sum((0, 1, 2)), rtol=1e-6)
    flat = odd.reshape(-1, 48)
    np.testing.assert_allclose(layers._channel_sums(flat), flat.sum(0), rtol=1e-6)


def test_large_map_matches_nnx_and_float64():
    x, weights = bn_cases._inputs(SHAPE)
    ours, theirs = bn_cases._pair(jnp.float32, False)
    loss, params = bn_cases._loss_fn(ours)
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss(p, x, weights)[0]))(params))
    assert jaxpr.count("dot_general") == 4  # mean, variance, and the backward's two sums
    x32, w32 = jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.float32)
    (loss_a, (y_a, stats_a)), grads_a = bn_cases._loss_and_grads(ours, x32, w32)
    (loss_b, (y_b, stats_b)), grads_b = bn_cases._loss_and_grads(theirs, x32, w32)
    np.testing.assert_allclose(y_a, y_b, rtol=0, atol=2e-6 * np.abs(y_b).max())
    np.testing.assert_allclose(stats_a["mean"][...], stats_b["mean"][...], rtol=1e-6)
    np.testing.assert_allclose(loss_a, loss_b, rtol=1e-6)
    with jax.enable_x64(True):
        _, reference = bn_cases._pair(jnp.float64, False, param_dtype=jnp.float64)
        reference.mean.set_value(jnp.zeros(6, jnp.float64))
        reference.var.set_value(jnp.ones(6, jnp.float64))
        _, ref = bn_cases._loss_and_grads(reference, jnp.asarray(x), jnp.asarray(weights))
        ref = jax.tree.map(lambda a: np.asarray(a, np.float64), ref)
    for name, a, b, r in [
        ("scale", grads_a[0]["scale"][...], grads_b[0]["scale"][...], ref[0]["scale"][...]),
        ("bias", grads_a[0]["bias"][...], grads_b[0]["bias"][...], ref[0]["bias"][...]),
        ("x", grads_a[1], grads_b[1], ref[1]),
    ]:
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        err = np.abs(a - r).max() / np.abs(r).max()
        err_nnx = np.abs(b - r).max() / np.abs(r).max()
        # As close to float64 as nnx's reductions (float32 rounding only).
        assert err < max(2 * err_nnx, 1e-6), (name, err, err_nnx)


def test_small_map_keeps_nnx_reductions():
    loss, params = bn_cases._loss_fn(layers.batch_norm(6, rngs=nnx.Rngs(0)))
    x, weights = jnp.ones((2, 4, 4, 6)), jnp.ones((2, 4, 4, 6))
    jaxpr = str(jax.make_jaxpr(jax.grad(lambda p: loss(p, x, weights)[0]))(params))
    assert "reduce_sum" in jaxpr and "dot_general" not in jaxpr

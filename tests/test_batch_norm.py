"""models.layers.BatchNorm in train mode: the same outputs and running statistics as
nnx.BatchNorm, and gradients (its own backward) equal to autodiff through nnx.BatchNorm, close
to a float64 reference, and right inside shard_map (replicated scale and bias, per-device batch)
and under jit on 8 devices."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from models import layers

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _pair(dtype, fast_variance: bool, param_dtype=jnp.float32):
    kw = dict(momentum=0.9, epsilon=1e-5, dtype=dtype, param_dtype=param_dtype)
    kw["use_fast_variance"] = fast_variance
    ours = layers.BatchNorm(6, **kw, rngs=nnx.Rngs(0))
    theirs = nnx.BatchNorm(6, **kw, rngs=nnx.Rngs(0))
    for bn in (ours, theirs):  # non-trivial affine parameters
        bn.scale.set_value(jnp.linspace(0.5, 1.5, 6, dtype=param_dtype))
        bn.bias.set_value(jnp.linspace(-0.2, 0.3, 6, dtype=param_dtype))
    return ours, theirs


def _loss_fn(bn):
    graphdef, params, stats = nnx.split(bn, nnx.Param, nnx.BatchStat)

    def loss(params, x, weights):
        model = nnx.merge(graphdef, params, stats, copy=True)
        model.train()
        y = model(x)
        new_stats = nnx.state(model, nnx.BatchStat)
        return jnp.sum(jnp.tanh(y.astype(weights.dtype)) * weights), (y, new_stats)

    return loss, params


def _loss_and_grads(bn, x, weights):
    loss, params = _loss_fn(bn)
    return jax.jit(jax.value_and_grad(loss, argnums=(0, 1), has_aux=True))(params, x, weights)


def _inputs(shape, seed=0):
    rng = np.random.default_rng(seed)
    # An offset mean and uneven spread per channel, as late feature maps have.
    x = rng.normal(size=shape) * np.linspace(0.5, 3, shape[-1]) + 2.0
    return x, rng.normal(size=shape)


@pytest.mark.parametrize(
    "dtype,fast_variance,tol",
    [
        (jnp.float32, False, 2e-5),
        (jnp.float32, True, 2e-5),
        (jnp.bfloat16, False, 2e-2),
        (jnp.float16, False, 2e-2),
    ],
    ids=["float32", "float32-fast-variance", "bfloat16", "float16"],
)
def test_train_mode_matches_nnx_batch_norm(dtype, fast_variance, tol):
    x, weights = _inputs((4, 9, 7, 6))
    x = jnp.asarray(x.astype(np.float32), dtype)
    weights = jnp.asarray(weights, jnp.float32)
    ours, theirs = _pair(dtype, fast_variance)
    (loss_a, (y_a, stats_a)), grads_a = _loss_and_grads(ours, x, weights)
    (loss_b, (y_b, stats_b)), grads_b = _loss_and_grads(theirs, x, weights)
    # Forward and running statistics: nnx's own helpers on the same inputs, so bitwise equal.
    # (The running variance differs by design: ours averages the unbiased batch variance.)
    assert y_a.dtype == y_b.dtype == dtype
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
        assert a.dtype == b.dtype and a.shape == b.shape, name
        a, b = np.asarray(a, np.float32), np.asarray(b, np.float32)
        np.testing.assert_allclose(a, b, rtol=0, atol=tol * np.abs(b).max(), err_msg=name)


def test_gradients_close_to_float64():
    x, weights = _inputs((8, 28, 28, 6))
    ours, _ = _pair(jnp.float32, False)
    _, grads = _loss_and_grads(ours, jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.float32))
    with jax.enable_x64(True):
        _, reference = _pair(jnp.float64, False, param_dtype=jnp.float64)
        reference.mean.set_value(jnp.zeros(6, jnp.float64))  # nnx keeps them float32
        reference.var.set_value(jnp.ones(6, jnp.float64))
        _, ref = _loss_and_grads(reference, jnp.asarray(x), jnp.asarray(weights))
        ref = jax.tree.map(lambda a: np.asarray(a, np.float64), ref)
    for name, a, b in [
        ("scale", grads[0]["scale"][...], ref[0]["scale"][...]),
        ("bias", grads[0]["bias"][...], ref[0]["bias"][...]),
        ("x", grads[1], ref[1]),
    ]:
        # float32 rounding only (measured 1.2e-7 .. 2.0e-7 of the largest entry).
        err = np.abs(np.asarray(a, np.float64) - b).max() / np.abs(b).max()
        assert err < 1e-6, (name, err)


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


def _shard_map_step(bn, mesh):
    """pmap mode's shape of a step: replicated parameters, per-device batch and statistics,
    cross-device sums of the loss and gradients (as jax's autodiff leaves them)."""
    loss, params = _loss_fn(bn)

    def step(params, x, weights):
        (value, (_, stats)), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(
            params, x, weights
        )
        return jax.lax.psum(value, "data"), grads, jax.lax.pmean(stats, "data")

    specs = (P(), P("data"), P("data"))
    f = jax.shard_map(step, mesh=mesh, in_specs=specs, out_specs=(P(), *specs[1:]))
    return f, params


def test_shard_map_with_replicated_scale_matches_autodiff_and_jit():
    # Inside shard_map the scale and bias are invariant over the mesh axis while x varies; the
    # custom backward must still be used, and agree with plain autodiff and with the same step
    # under jit alone (pmap mode on one device against jit mode).
    mesh = jax.make_mesh((1,), ("data",))
    x, weights = _inputs((4, 9, 7, 6))
    batch = NamedSharding(mesh, P("data"))
    x, weights = (jax.device_put(jnp.asarray(a, jnp.float32), batch) for a in (x, weights))
    ours, theirs = _pair(jnp.float32, False)
    specs = (P(), P("data"), P("data"))
    results = []
    for bn in (ours, theirs):
        f, params = _shard_map_step(bn, mesh)
        loss, _ = _loss_fn(bn)
        forward = jax.shard_map(
            lambda *a, loss=loss: loss(*a)[1][0], mesh=mesh, in_specs=specs, out_specs=P("data")
        )
        jaxpr = str(jax.make_jaxpr(forward)(params, x, weights))
        assert ("custom_vjp_call" in jaxpr) == (bn is ours)
        results.append(jax.jit(f)(params, x, weights))
    (loss_a, grads_a, stats_a), (loss_b, grads_b, stats_b) = results
    (loss_j, _), grads_j = _loss_and_grads(ours, x, weights)
    assert loss_a == loss_b == loss_j
    np.testing.assert_array_equal(stats_a["mean"][...], stats_b["mean"][...])
    for name in ("scale", "bias"):
        a, b = grads_a[0][name][...], grads_b[0][name][...]
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max(), err_msg=name)
        # Same program inside shard_map or not: the same numbers.
        np.testing.assert_array_equal(a, grads_j[0][name][...], err_msg=name)
    np.testing.assert_allclose(grads_a[1], grads_b[1], rtol=0, atol=2e-5 * np.abs(grads_b[1]).max())
    np.testing.assert_array_equal(grads_a[1], grads_j[1])


_EIGHT_DEVICES = """
import json, sys
import jax, jax.numpy as jnp, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
sys.path.insert(0, {tests!r})
import test_batch_norm as t

mesh = jax.make_mesh((8,), ("data",))
batch, replicated = NamedSharding(mesh, P("data")), NamedSharding(mesh, P())
x, weights = t._inputs((16, 5, 5, 6))
x, weights = jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.float32)
out = {{}}
for name, bn in zip(("ours", "theirs"), t._pair(jnp.float32, False)):
    f, params = t._shard_map_step(bn, mesh)
    params = jax.device_put(params, replicated)
    loss, grads, _ = jax.jit(f)(params, jax.device_put(x, batch), jax.device_put(weights, batch))
    out["shard_map_" + name] = [float(loss), np.asarray(grads[0]["scale"][...]).tolist(),
                                np.asarray(grads[0]["bias"][...]).tolist()]
    (loss, (_, stats)), grads = t._loss_and_grads(
        bn, jax.device_put(x, batch), jax.device_put(weights, batch))
    (loss1, (_, stats1)), grads1 = t._loss_and_grads(bn, x, weights)  # one device
    out["jit_" + name] = [float(loss), float(loss1)] + [
        float(np.abs(np.asarray(a) - np.asarray(b)).max() / np.abs(np.asarray(b)).max())
        for a, b in [(grads[0]["scale"][...], grads1[0]["scale"][...]),
                     (grads[0]["bias"][...], grads1[0]["bias"][...]),
                     (grads[1], grads1[1]), (stats["var"][...], stats1["var"][...])]]
print(json.dumps(out))
"""


def test_eight_devices_shard_map_and_jit():
    # 8 fake CPU devices must be configured before jax starts: a subprocess.
    env = dict(os.environ, JAX_PLATFORMS="cpu", PYTHONPATH=ROOT)
    env["XLA_FLAGS"] = env.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    code = _EIGHT_DEVICES.format(tests=os.path.join(ROOT, "tests"))
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=ROOT, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    # pmap mode: per-device statistics; the replicated parameters' gradients are summed over
    # the 8 devices (jax's transpose of the cast to varying), as plain autodiff sums them.
    ours, theirs = out["shard_map_ours"], out["shard_map_theirs"]
    assert ours[0] == theirs[0]
    for a, b in zip(ours[1:], theirs[1:], strict=True):
        np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max())
    # jit mode: the global batch's statistics, so 8 devices agree with one (reduction order only).
    for name in ("jit_ours", "jit_theirs"):
        loss8, loss1, *errors = out[name]
        assert abs(loss8 - loss1) <= 1e-5 * abs(loss1), name
        assert max(errors) < 1e-5, (name, errors)

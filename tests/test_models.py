"""The contract every registered model keeps (timm style): one test body, every variant."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import models
from models import registry

ALL = models.names()


@pytest.mark.parametrize("name", ALL)
def test_exact_parameter_count(name):
    """At 1000 classes the parameter count equals the published (reference-measured) figure."""
    assert registry.count_params(registry.abstract(name, num_classes=1000)) == models.info(name).num_params


@pytest.mark.parametrize("name", ALL)
def test_contract(name):
    info = models.info(name)
    size, num_classes, batch = info.test_input_size, 7, 2
    model = models.create(name, num_classes=num_classes, rngs=nnx.Rngs(1))
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    labels = jnp.arange(batch) % num_classes

    # Eval: shape, float32 logits, deterministic, BatchNorm statistics untouched.
    stats_before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    forward = nnx.jit(lambda m, x: m(x))
    out1, out2 = forward(model, x), forward(model, x)
    assert out1.shape == (batch, num_classes) and out1.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))
    stats_after = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    jax.tree.map(np.testing.assert_array_equal, stats_before, stats_after)

    # Train: finite loss and gradients, BatchNorm statistics move.
    model.train()

    @nnx.jit
    def loss_and_grads(m, x):
        def loss_fn(m):
            return optax.softmax_cross_entropy_with_integer_labels(m(x), labels).mean()

        return nnx.value_and_grad(loss_fn)(m)

    loss, grads = loss_and_grads(model, x)
    assert np.isfinite(float(loss))
    leaves = jax.tree.leaves(grads)
    assert leaves and all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    assert any(float(jnp.abs(g).max()) > 0 for g in leaves)
    if jax.tree.leaves(stats_before):
        moved = jax.tree.map(
            lambda a, b: not np.array_equal(a, np.asarray(b)),
            stats_before,
            nnx.state(model, nnx.BatchStat),
        )
        assert any(jax.tree.leaves(moved)), "train mode should update BatchNorm statistics"


def test_unknown_model_names_the_choices():
    with pytest.raises(KeyError, match="hardnet68"):
        models.create("hardnet69")

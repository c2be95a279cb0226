"""Canonical weights: bit-exact round trips and strict errors that name the keys."""

from __future__ import annotations

import jax
import numpy as np
import pytest
from flax import nnx

import models
from models.weights import WeightsMismatchError


@pytest.fixture(scope="module")
def model():
    m = models.create("hardnet39ds", num_classes=10, rngs=nnx.Rngs(3))
    # Non-trivial BatchNorm statistics, so the round trip covers them too.
    for path, var in nnx.state(m, nnx.BatchStat).flat_state():
        var.set_value(jax.random.uniform(jax.random.key(len(path)), var.get_value().shape))
    return m


def test_flatten_names_params_and_statistics(model):
    flat = models.weights.flatten(model)
    assert flat["base.0.conv.kernel"].shape == (3, 3, 3, 24)  # HWIO
    assert flat["base.14.3.kernel"].shape == (1024, 10)  # [in, out]
    assert {"base.0.norm.scale", "base.0.norm.bias", "base.0.norm.mean", "base.0.norm.var"} <= set(
        flat
    )


def test_save_read_load_round_trip_is_bit_exact(model, tmp_path):
    path = tmp_path / "w.safetensors"
    models.weights.save(model, path)
    flat, meta = models.weights.read(path)
    assert meta["model"] == "hardnet39ds" and meta["num_classes"] == "10"
    other = models.create("hardnet39ds", num_classes=10, rngs=nnx.Rngs(99))
    models.weights.load(other, flat)
    original = models.weights.flatten(model)
    restored = models.weights.flatten(other)
    assert original.keys() == restored.keys()
    for key in original:
        np.testing.assert_array_equal(original[key], restored[key])


def test_create_from_weights_holds_them_and_runs(model):
    """models.create(weights=...) skips the random init: the file's values, writable later (a
    fine-tune or a second load writes into them), and the same logits as the source model."""
    flat = models.weights.flatten(model)
    built = models.create("hardnet39ds", num_classes=10, weights=flat)
    restored = models.weights.flatten(built)
    assert restored.keys() == flat.keys()
    for key in flat:
        np.testing.assert_array_equal(restored[key], flat[key])
    models.weights.load(built, flat)
    x = np.random.default_rng(0).standard_normal((2, 32, 32, 3)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(built(x)), np.asarray(model(x)))


def test_missing_unexpected_and_misshaped_keys_are_named(model):
    flat = models.weights.flatten(model)
    flat.pop("base.1.norm.mean")
    flat["base.99.conv.kernel"] = np.zeros(3)
    flat["base.0.conv.kernel"] = np.zeros((3, 3, 3, 25), np.float32)
    with pytest.raises(WeightsMismatchError) as err:
        models.weights.load(model, flat)
    message = str(err.value)
    assert "base.1.norm.mean" in message and "base.99.conv.kernel" in message
    assert "base.0.conv.kernel (expected (3, 3, 3, 24), got (3, 3, 3, 25))" in message


def test_read_missing_file_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        models.weights.read(tmp_path / "nope.safetensors")

"""The contract every registered model keeps (timm style): one test body, every variant.

Variants that only change widths or depths of another variant's code (tests/variants.py) get
the abstract half of the contract (parameter count, shapes and dtypes in eval and train mode, no
compile); the compiled forward and backward run on their representative.
"""

from __future__ import annotations

import dataclasses
import re

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

import models
from models import compat, hlg, hlg_arch, layers, registry, variants
from tests.variants import SAME_CODE_PATHS

ALL = models.names()
REPRESENTATIVES = [n for n in ALL if n not in SAME_CODE_PATHS]
# Representatives whose compiled contract runs on another variant's widths and depths with
# their own code path: hlg_tiny_dwconv is HLG-Tiny (HLG-mobile's blocks, wider and deeper) plus
# the h0_conv window tokens, which HLG-mobile's widths and depths run as well (its tests, cold
# compilation cache: 54 -> 43 CPU-s). Its own build gets the abstract contract, as the other
# same-code-path variants do.
COMPILED_AT = {"hlg_tiny_dwconv": "hlg_mobile"}


# The fast tier compiles one small model per CNN family; the others are big compiles.
FAST_COMPILED = ("hardnet39ds", "hrnet_w18_small")


def _tiered(names: list[str], fast: tuple[str, ...] | None = None) -> list:
    """Models that only take 224 px inputs (HLG) compile big graphs: the slow tier; with `fast`,
    so does every model not in it."""
    slow = pytest.mark.slow
    return [
        pytest.param(n, marks=slow)
        if models.info(n).test_input_size >= 224 or (fast is not None and n not in fast)
        else n
        for n in names
    ]


def _assert_published_count(name: str, model: nnx.Module) -> None:
    """At 1000 classes the parameter count equals the registry's count of our build."""
    assert registry.count_params(model) == models.info(name).num_params


@pytest.mark.parametrize("name", ALL)
def test_published_and_built_counts_differ_only_with_a_reason(name):
    """The published count (as printed) and ours are both stated; a one-line reason is given
    exactly where they disagree at the published precision, or where nothing is published."""
    info = models.info(name)
    assert info.num_params > 0
    agree = variants.matches_published(info)
    if agree:
        assert info.params_note is None, (name, info.params_note)
    else:
        assert info.params_note and "\n" not in info.params_note and len(info.params_note) < 200
    if info.published_params is None:
        assert info.top1 is None  # nothing published for this variant at all
    assert info.top1 is None or 50.0 < info.top1 < 100.0


def test_published_count_parsing_and_matching():
    assert variants.published_params_value("3.5M") == (3.5e6, 1)
    assert variants.published_params_value("84M") == (84e6, 0)
    row = variants.get("hlg_tiny")
    assert variants.matches_published(row)  # 11,035,824 is "11M"
    assert not variants.matches_published(variants.get("hlg_large"))  # 70.5M vs "84M"
    with pytest.raises(ValueError, match="millions"):
        variants.published_params_value("11 million")


@pytest.mark.parametrize("name", REPRESENTATIVES)
def test_exact_parameter_count(name):
    """The other variants check theirs in test_abstract_contract, on the model it traces."""
    _assert_published_count(name, registry.abstract(name, num_classes=1000))


def test_every_same_code_path_variant_has_a_registered_representative():
    assert set(SAME_CODE_PATHS) <= set(ALL)
    assert set(SAME_CODE_PATHS.values()) <= set(REPRESENTATIVES)
    for variant, representative in SAME_CODE_PATHS.items():
        assert models.info(variant).family == models.info(representative).family


@pytest.mark.parametrize("name", _tiered(sorted([*SAME_CODE_PATHS, *COMPILED_AT])))
def test_abstract_contract(name):
    """Exact parameter count; eval and train mode trace at the test size to float32 logits of
    the right shape and leave every state shape as it was. (One abstract build serves both: for
    hlg_large it takes 40 s.)"""
    size, num_classes, batch = models.info(name).test_input_size, 1000, 2
    model = registry.abstract(name, num_classes=num_classes)
    _assert_published_count(name, model)
    x = jax.ShapeDtypeStruct((batch, size, size, 3), jnp.float32)
    assert model.num_classes == num_classes
    graphdef, state = nnx.split(model)
    shapes = jax.tree.map(lambda v: (v.shape, v.dtype), state)

    def features_then_head(state, x):
        m = nnx.merge(graphdef, state)
        features = m.forward_features(x)
        return features, m.forward_head(features)

    features, logits = jax.eval_shape(features_then_head, state, x)
    assert features.shape == (batch, model.num_features), features
    assert logits.shape == (batch, num_classes) and logits.dtype == jnp.float32
    for train in (False, True):
        model = nnx.merge(graphdef, state)
        model.train() if train else model.eval()

        def forward(state, x, model=model):
            graphdef, _ = nnx.split(model)
            m = nnx.merge(graphdef, state)
            return m(x), nnx.state(m)

        out, new_state = jax.eval_shape(forward, state, x)
        assert out.shape == (batch, num_classes) and out.dtype == jnp.float32, (train, out)
        assert jax.tree.map(lambda v: (v.shape, v.dtype), new_state) == shapes


@pytest.mark.parametrize("name", _tiered(REPRESENTATIVES, fast=FAST_COMPILED))
def test_contract(name):
    """Eval, timm's interface, train, then reset_classifier, on one built model (building and
    compiling are the cost: one eval program serves the eval and interface checks). A
    COMPILED_AT variant runs its code at the other variant's widths and depths."""
    info = models.info(name)
    size, num_classes, batch = info.test_input_size, 7, 2
    model = _create(name, num_classes)
    x = jax.random.normal(jax.random.key(0), (batch, size, size, 3), jnp.float32)
    labels = jnp.arange(batch) % num_classes

    # Eval: shape, float32 logits, deterministic, BatchNorm statistics untouched; timm's
    # interface: the head applied to the pooled features is the model.
    assert model.num_classes == num_classes
    stats_before = jax.tree.map(np.asarray, nnx.state(model, nnx.BatchStat))
    forward = nnx.jit(lambda m, x: (f := m.forward_features(x), m.forward_head(f), m(x)))
    (features, via_head, out1), (_, _, out2) = forward(model, x), forward(model, x)
    assert out1.shape == (batch, num_classes) and out1.dtype == jnp.float32
    np.testing.assert_array_equal(np.asarray(out1), np.asarray(out2))
    assert features.shape == (batch, model.num_features)
    np.testing.assert_array_equal(np.asarray(via_head), np.asarray(out1))
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
    leaves = [np.asarray(g) for g in jax.tree.leaves(grads)]  # numpy: no program per shape
    assert leaves and all(np.isfinite(g).all() for g in leaves)
    assert any(np.abs(g).max() > 0 for g in leaves)
    if jax.tree.leaves(stats_before):
        moved = jax.tree.map(
            lambda a, b: not np.array_equal(a, np.asarray(b)),
            stats_before,
            nnx.state(model, nnx.BatchStat),
        )
        assert any(jax.tree.leaves(moved)), "train mode should update BatchNorm statistics"
    _assert_reset_classifier(model, size)


def test_private_flax_orbax_and_jax_apis_are_still_there():
    """models/compat.py's workarounds need these; an upgrade that drops one fails here."""
    assert compat.missing() == [], (
        f"{compat.missing()} gone (written for {compat.WRITTEN_FOR}): revisit models/compat.py"
    )
    assert compat.distributed_client() is None  # no jax.distributed.initialize in this process


def test_unknown_model_names_the_choices():
    with pytest.raises(KeyError, match="hardnet68"):
        models.create("hardnet69")


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.bfloat16])
def test_cheap_trace_batchnorm_equals_nnx(dtype) -> None:
    """layers.batch_norm (every family's BatchNorm, cheap statistics update) against
    nnx.BatchNorm with the same settings: same outputs, updated statistics and gradients, in
    train and in eval mode."""
    x = jax.random.normal(jax.random.key(0), (4, 5, 5, 8)) * 3 + 1
    pair = [
        nnx.BatchNorm(
            8,
            momentum=0.9,
            epsilon=1e-5,
            dtype=dtype,
            param_dtype=jnp.float32,
            use_fast_variance=False,
            rngs=nnx.Rngs(0),
        ),
        layers.batch_norm(8, dtype=dtype, rngs=nnx.Rngs(0)),
    ]
    assert type(pair[1]) is layers.BatchNorm
    for bn in pair:
        bn.scale.set_value(jnp.linspace(0.5, 1.5, 8))
        bn.bias.set_value(jnp.linspace(-1.0, 1.0, 8))
        bn.mean.set_value(jnp.ones(8))
        bn.var.set_value(jnp.full(8, 2.0))

    def loss(bn, x):
        return jnp.mean(bn(x).astype(jnp.float32) ** 2)

    for train in (True, False):
        outs, grads = [], []
        for bn in pair:
            bn.mean.set_value(jnp.ones(8))  # the running variances differ after training
            bn.var.set_value(jnp.full(8, 2.0))
            bn.train() if train else bn.eval()
            outs.append(np.asarray(bn(x), np.float32))
            grads.append(nnx.state(nnx.grad(loss)(bn, x)))
        np.testing.assert_array_equal(outs[0], outs[1])
        jax.tree.map(np.testing.assert_array_equal, grads[0], grads[1])
        np.testing.assert_array_equal(pair[0].mean.get_value(), pair[1].mean.get_value())
        # Ours averages the unbiased batch variance (PyTorch, MindSpore), nnx the biased one.
        # In training, two updates (the call and the gradient), each with the same batch.
        nnx_var, n, kept = np.asarray(pair[0].var.get_value()), x.size // x.shape[-1], 0.81 * 2.0
        expected = kept + (nnx_var - kept) * n / (n - 1) if train else nnx_var
        np.testing.assert_allclose(pair[1].var.get_value(), expected, rtol=2e-6)


def _create(name: str, num_classes: int) -> nnx.Module:
    """models.create(name), or for a COMPILED_AT variant its code at the other one's widths and
    depths (HLG only)."""
    if name not in COMPILED_AT:
        return models.create(name, num_classes=num_classes, rngs=nnx.Rngs(1))
    own, smaller = hlg_arch.CONFIGS[name], hlg_arch.CONFIGS[COMPILED_AT[name]]
    cfg = dataclasses.replace(smaller, window_tokens=own.window_tokens)
    assert cfg != smaller  # the variant's code differs from the smaller variant's
    model = registry._init_compiled(  # models.create's compiled init, for a config of our own
        lambda r: hlg.HLG(cfg, num_classes=num_classes, rngs=r), nnx.Rngs(1).params()
    )
    model.eval()

    # The same modules as the variant's own build, up to block counts and widths.
    def kinds(m):
        return {re.sub(r"\.\d+\.", ".#.", k) for k in models.weights.shapes(m)}

    assert kinds(model) == kinds(registry.abstract(name, num_classes=num_classes))
    return model


def _assert_reset_classifier(model: nnx.Module, size: int) -> None:
    """reset_classifier(5): only the head changes shape and values; it is initialised as the
    built model's head was."""
    flat = models.weights.flatten(model)
    model.reset_classifier(5, rngs=nnx.Rngs(2))
    assert model.num_classes == 5
    after = models.weights.flatten(model)
    assert after.keys() == flat.keys()
    head = sorted(k for k in after if after[k].shape != flat[k].shape)
    assert head and all(after[k].shape[-1] == 5 for k in head), head
    for key in after.keys() - set(head):
        np.testing.assert_array_equal(after[key], flat[key], err_msg=key)
    for key in head:  # same initialiser: same spread, zero bias where the family's is zero
        if after[key].size >= 1000:  # (a 5-element bias says little about its spread)
            assert np.std(after[key]) == pytest.approx(np.std(flat[key]), rel=0.2), key
        assert (np.abs(after[key]).max() == 0) == (np.abs(flat[key]).max() == 0), key
    graphdef, state = nnx.split(model)
    x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
    assert jax.eval_shape(lambda s, x: nnx.merge(graphdef, s)(x), state, x).shape == (1, 5)

"""The CPU compile options of the train, eval and predict steps: XLA's own (Eigen) convolutions
instead of YNNPACK's, and the user's XLA_FLAGS winning over them."""

from __future__ import annotations

import os
import re

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from configs import base
from models import compat, layers
from train_lib import build, steps
from train_lib import mesh as mesh_lib
from train_lib.state import SplitModel


class _WideConv(nnx.Module):
    """One 3x3 convolution wide enough that XLA:CPU's defaults hand it to a YNNPACK fusion."""

    def __init__(self):
        self.conv = layers.conv2d(3, 64, 3, dtype=jnp.float32, rngs=nnx.Rngs(0))
        self.head = nnx.Linear(64, 10, rngs=nnx.Rngs(1))

    def __call__(self, x):
        return self.head(self.conv(x).mean(axis=(1, 2)))


def _convolutions(compiled_text: str) -> tuple[int, int]:
    """(convolutions in the program, those inside YNNPACK fusions), from the optimized HLO."""
    bodies, name = {}, None
    for line in compiled_text.splitlines():
        if line and not line[0].isspace() and line.rstrip().endswith("{"):
            name = line.split()[1] if line.startswith("ENTRY") else line.split()[0]
            bodies[name.lstrip("%")] = []
        elif name is not None:
            bodies[name.lstrip("%")].append(line)
    called = re.findall(r"calls=%?([\w.\-]+).*__ynn_fusion", compiled_text)
    count = lambda lines: sum(" convolution(" in line for line in lines)  # noqa: E731
    return count(compiled_text.splitlines()), sum(count(bodies.get(c, [])) for c in called)


def test_cpu_steps_compile_with_xla_own_convolutions():
    # jax 0.10's XLA:CPU knows the option; a release without it must fail here, not go silent.
    assert compat.cpu_step_compiler_options() == compat.CPU_STEP_COMPILER_OPTIONS
    split = SplitModel(_WideConv())
    mesh = mesh_lib.make_mesh()
    images = jnp.zeros((8, 56, 56, 3), jnp.uint8)
    labels = jnp.zeros((8,), jnp.int32)
    norm = {"mean": (0.5,) * 3, "std": (0.25,) * 3, "dtype": jnp.float32}
    params, stats = split.initial_params, split.initial_stats

    def forward(params, images):
        return split.apply(params, stats, steps.normalize(images, **norm), train=False)[0]

    # The default this turns off: the same forward under a plain jit convolves in YNNPACK.
    assert _convolutions(jax.jit(forward).lower(params, images).compile().as_text()) == (1, 1)
    eval_step = steps.make_eval_step(split, **norm)
    batch = {"image": images, "label": labels, "mask": jnp.ones((8,), bool)}
    assert _convolutions(eval_step.lower(params, stats, batch).compile().as_text()) == (1, 0)
    tx = optax.sgd(0.1)
    state = build.initial_state(base.get_config(), tx, params, stats)
    train_step = steps.make_train_step(split, tx, **norm, label_smoothing=0.0, mesh=mesh)
    text = train_step.lower(state, {"image": images, "label": labels}).compile().as_text()
    total, in_ynn = _convolutions(text)
    assert total >= 2 and in_ynn == 0  # forward and the kernel's gradient


def test_users_xla_flags_win_over_the_cpu_step_options(monkeypatch):
    flag = "--xla_cpu_experimental_ynn_fusion_type="
    monkeypatch.setenv("XLA_FLAGS", f"{os.environ.get('XLA_FLAGS', '')} {flag}")
    compat.cpu_step_compiler_options.cache_clear()
    try:
        assert compat.cpu_step_compiler_options() == {}
    finally:
        monkeypatch.undo()
        compat.cpu_step_compiler_options.cache_clear()
    assert compat.cpu_step_compiler_options() == compat.CPU_STEP_COMPILER_OPTIONS

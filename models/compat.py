"""Every private flax / orbax API the JAX side uses, in one place, with the version it was
written for. tests/test_models.py fails loudly (naming the attribute) when an upgrade removes
one; on such a release the callers here fall back where they can and say so where they cannot.

- flax.nnx BatchNorm's statistics helpers (`_canonicalize_axes`, `_compute_stats`, `_normalize`)
  and `Variable._can_update`: models.layers.BatchNorm reuses them for a train-mode update that
  is cheap to trace with the same numerics as nnx.BatchNorm.
- orbax CheckpointManager `_maybe_await_cleanup_tmp_directory`: the manager starts its temp-dir
  cleanup in a thread when it opens and only save() waits for it, so a process that exits
  without saving printed "cannot schedule new futures after shutdown".
- XLA:CPU's `xla_cpu_experimental_ynn_fusion_type` compile option (jax 0.10.x): the train,
  eval and predict steps keep YNNPACK's convolutions off on CPU (`cpu_step_compiler_options`).
- jax's generic (unrolled) lowering of the threefry2x32 primitive
  (`jax._src.random.threefry2x32._threefry2x32_lowering_rule`): `unroll_threefry_on_cpu`
  registers it for CPU too, where jax lowers threefry as a rolled loop that compiles slowly.
- jax's distributed-runtime client (`jax._src.distributed.global_state.client`) and its
  key-value store: train_lib.multihost's watchdog exchanges heartbeats through it, so a process
  that dies mid-run is named in one line instead of the runtime's abort.

Public but version-dependent (no entry in PRIVATE_APIS): the manual mesh axes a value varies
over inside shard_map, `jax.typeof(x).manual_axis_type.varying` (jax 0.10 and 0.11; jax 0.6-0.8
called it `.vma`), read by `varying_axes`.
"""

from __future__ import annotations

import functools
import importlib
import os
from typing import Any

import jax
import numpy as np
from flax.nnx import Variable
from flax.nnx.nn import normalization as _nnx_norm

WRITTEN_FOR = {"flax": "0.12.8", "orbax-checkpoint": "0.12.8", "jax": "0.10.2"}

# (module, attribute) of each private API used here.
PRIVATE_APIS = (
    ("flax.nnx.nn.normalization", "_canonicalize_axes"),
    ("flax.nnx.nn.normalization", "_compute_stats"),
    ("flax.nnx.nn.normalization", "_normalize"),
    ("flax.nnx", "Variable._can_update"),
    ("orbax.checkpoint", "CheckpointManager._maybe_await_cleanup_tmp_directory"),
    ("jax._src.random.threefry2x32", "_threefry2x32_lowering_rule"),
    ("jax._src.distributed", "global_state.client"),
    ("jax._src.lib", "_jax.DistributedRuntimeClient.key_value_set"),
    ("jax._src.lib", "_jax.DistributedRuntimeClient.key_value_dir_get"),
)


def missing() -> list[str]:
    """The private APIs above that the installed versions lack ("module.attr" strings)."""
    out = []
    for module, path in PRIVATE_APIS:
        obj: Any = importlib.import_module(module)
        for part in path.split("."):
            if not hasattr(obj, part):
                out.append(f"{module}.{path}")
                break
            obj = getattr(obj, part)
    return out


canonicalize_axes = _nnx_norm._canonicalize_axes
compute_stats = _nnx_norm._compute_stats
normalize = _nnx_norm._normalize


def varying_axes(x: Any) -> frozenset:
    """The manual (shard_map) mesh axes `x` varies over; empty outside shard_map."""
    aval = jax.typeof(x)
    mat = getattr(aval, "manual_axis_type", None)
    return frozenset(mat.varying if mat is not None else getattr(aval, "vma", ()))


def can_update(variable: Variable) -> bool:
    """Whether writes go through to an array ref (nnx.BatchNorm stops gradients only then)."""
    return variable._can_update


def await_orbax_tmp_cleanup(manager: Any) -> None:
    """Waits for the temp-dir cleanup an orbax CheckpointManager starts when it opens; releases
    without the method have nothing to wait for."""
    await_cleanup = getattr(manager, "_maybe_await_cleanup_tmp_directory", None)
    if await_cleanup is not None:
        await_cleanup()


def distributed_client() -> Any | None:
    """jax.distributed's key-value client once initialize() ran; None where this jax release
    lacks it (or a method the watchdog needs), so callers fall back to the runtime's own
    heartbeat."""
    try:
        state = importlib.import_module("jax._src.distributed").global_state
    except ImportError:
        return None
    client = getattr(state, "client", None)
    needed = ("key_value_set", "key_value_dir_get")
    return client if all(hasattr(client, n) for n in needed) else None


# XLA:CPU in jax 0.10 hands convolutions (and dots) to YNNPACK fusions by default. Its
# convolutions are slower than XLA's own (Eigen) ones here: HarDNet-68's eval step (batch 8,
# 224 px, idle 2-core x86 VM) took 717 ms with them and 488-532 ms without (PyTorch eager: 492
# ms). Only convolutions leave YNNPACK; dots stay (the setting keeps the one fusion type listed).
# Values agree to fp32 rounding (the step parity tests compare the steps with PyTorch/MindSpore).
CPU_STEP_COMPILER_OPTIONS = {
    "xla_cpu_experimental_ynn_fusion_type": "LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT"
}


@functools.cache
def cpu_step_compiler_options() -> dict[str, Any]:
    """Compile options for the jitted train/eval/predict steps: the ones above on the CPU
    backend when this XLA knows them (an experimental option may go in any release: then none,
    with the library's defaults), nothing on GPU/TPU, and nothing where the user's XLA_FLAGS
    set them (compile options would override the user's choice)."""
    user_flags = os.environ.get("XLA_FLAGS", "")
    if any(k in user_flags for k in CPU_STEP_COMPILER_OPTIONS):
        return {}
    return _on_cpu_if_known(CPU_STEP_COMPILER_OPTIONS)


def _on_cpu_if_known(options: dict[str, Any]) -> dict[str, Any]:
    """`options` on the CPU backend if this XLA compiles with them; nothing otherwise."""
    if jax.default_backend() != "cpu":
        return {}
    try:
        probe = jax.jit(lambda x: x + 1, compiler_options=options)
        probe.lower(np.float32(0)).compile()
    except jax.errors.JaxRuntimeError:
        return {}
    return dict(options)


# jax lowers the threefry2x32 hash (every jax.random draw) on CPU as a 5-iteration while loop,
# which keeps each draw out of the surrounding fusions: a model's random init becomes hundreds of
# small loop bodies for XLA to compile (HarDNet-39ds: 1,295 fusions; HLG-mobile: 3,343). The
# unrolled form, jax's lowering on every other backend, is one fusion per draw and the same bits
# (the hash is the same arithmetic; tests/test_threefry.py checks Random123's answers; the
# weights of HarDNet-39ds and HLG-mobile and normal, split and bernoulli draws were compared
# equal). It pays off with XLA:CPU's fast-compile preset (`cpu_init_compiler_options`): CPU-s
# to compile the jitted init, before -> preset -> preset and unrolled, 2 idle cores: HLG-Tiny
# 29 -> 22 -> 6.4, HarDNet-68 7.6 -> 4.8 (preset and unrolled). Without the preset the unrolled
# form alone compiles no faster (HLG-Tiny 29 vs 30-33).
@functools.cache
def unroll_threefry_on_cpu() -> bool:
    """Lowers jax.random's hash unrolled on CPU; False where this jax lacks the generic rule
    (then jax's own CPU lowering stays: same values, slower compiles)."""
    from jax.extend.random import threefry2x32_p
    from jax.interpreters import mlir

    try:  # only the rule is private
        from jax._src.random import threefry2x32 as threefry
    except ImportError:
        return False
    rule = getattr(threefry, "_threefry2x32_lowering_rule", None)
    if rule is None:
        return False
    mlir.register_lowering(threefry2x32_p, rule, platform="cpu", inline=False)
    return True


# The random init runs once, so its program is compiled for compile time, not speed.
CPU_INIT_COMPILER_OPTIONS = {"xla_cpu_opt_preset": "CPU_OPT_PRESET_FAST_COMPILE"}


@functools.cache
def cpu_init_compiler_options() -> dict[str, Any]:
    """XLA:CPU's fast-compile preset for the jitted random init, where the backend is CPU and
    this XLA knows the option; nothing otherwise."""
    return _on_cpu_if_known(CPU_INIT_COMPILER_OPTIONS)

"""Nothing non-finite is committed: one on-device reduction over the weights and the step's loss,
fetched only on steps that save (a save synchronises anyway), and a check of weights read back."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from train_lib import mesh as mesh_lib
from train_lib.errors import UserError


class NonFiniteError(UserError):
    """Training produced NaN/inf: a diverged run, not a bug; the message names the step."""


@jax.jit
def _all_finite(tree: Any) -> jax.Array:
    leaves = [x for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)]
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in leaves]))


def all_finite(tree: Any) -> bool:
    """True when every float array of `tree` (replicated jax arrays) is finite; one host fetch."""
    return bool(mesh_lib.fetch_replicated(_all_finite(tree)))


def diverged(step: int, last_good: int | None, directory: str) -> NonFiniteError:
    good = (
        f"the last good checkpoint is step {last_good} in {directory}"
        if last_good is not None
        else "no checkpoint was saved"
    )
    return NonFiniteError(
        f"training diverged: non-finite loss, parameters or BatchNorm statistics at step {step}; "
        f"nothing from it was saved ({good}); lower schedule.lr_max or set train.grad_clip_norm"
    )


def check_weights(flat: Mapping[str, np.ndarray], source: str) -> None:
    """Refuses weights holding NaN/inf (read from a checkpoint or a file) before use or export."""
    bad = [
        k
        for k, v in flat.items()
        if np.issubdtype(np.asarray(v).dtype, np.inexact) and not np.isfinite(v).all()
    ]
    if bad:
        raise NonFiniteError(
            f"{source} holds non-finite weights ({len(bad)} of {len(flat)} "
            f"arrays, e.g. {bad[0]}); use an earlier checkpoint or retrain"
        )

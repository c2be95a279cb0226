"""jax.random's hash on CPU, lowered unrolled (models.compat.unroll_threefry_on_cpu): the same
bits as the Threefry-2x32-20 reference, and no loop left in the compiled program."""

from __future__ import annotations

import jax
import numpy as np
from jax.extend import random as jax_random

from models import compat, registry  # noqa: F401  (importing the registry registers the lowering)

# Random123's known-answer vectors for threefry2x32_20: (key, counter) -> output.
KNOWN_ANSWERS = [
    ((0x00000000, 0x00000000), (0x00000000, 0x00000000), (0x6B200159, 0x99BA4EFE)),
    ((0xFFFFFFFF, 0xFFFFFFFF), (0xFFFFFFFF, 0xFFFFFFFF), (0x1CB996FC, 0xBB002BE7)),
    ((0x13198A2E, 0x03707344), (0x243F6A88, 0x85A308D3), (0xC4923A9C, 0x483DF7A0)),
]


def test_the_cpu_lowering_is_unrolled_and_gives_the_reference_bits():
    hash_fn = jax.jit(jax_random.threefry_2x32)
    zeros = np.uint32([0, 0])
    # Registered when models.registry was imported (above), before any explicit call.
    assert "while" not in hash_fn.lower(zeros, zeros).compile().as_text()
    assert compat.unroll_threefry_on_cpu()  # this jax has the generic rule
    for key, counter, expected in KNOWN_ANSWERS:
        out = hash_fn(np.uint32(key), np.uint32(counter))
        assert [int(v) for v in out] == list(expected), (key, counter)

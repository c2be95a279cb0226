"""How every MindSpore-side check script ends: it records the frameworks it must not have
imported (the port never imports jax, flax or tensorflow) and writes results.json for the JAX
side to assert on."""

from __future__ import annotations

import json
import os
import sys

FORBIDDEN = ("jax", "flax", "tensorflow")


def write(d: str, results: dict) -> None:
    """Adds results["forbidden_modules"] (those imported so far) and writes d/results.json."""
    results["forbidden_modules"] = sorted(m for m in FORBIDDEN if m in sys.modules)
    with open(os.path.join(d, "results.json"), "w") as f:
        json.dump(results, f, indent=1)

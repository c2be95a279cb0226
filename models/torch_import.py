"""Import of PyTorch state dicts (official code, timm, pytorchcv) into our Flax models.

Our module trees mirror the official PyTorch naming, so for official/timm state dicts the rename
is identity on module paths; only the leaf names (weight -> kernel/scale, running_* -> mean/var)
and layouts (OIHW -> HWIO, [out, in] -> [in, out]) change, by the generic rules of
`models.layout`. A family that must read another naming (pytorchcv's HarDNet) provides
`torch_namings()` and `rename_torch_key(variant, key, naming)` in its own module.
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from models import layout, registry

# Wrapper keys seen in released checkpoints ({"model": sd}, {"state_dict": sd}, EMA copies).
_WRAPPER_KEYS = ("state_dict", "model", "model_ema", "net", "module")


def unwrap(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    """Strips checkpoint wrappers and DataParallel 'module.' prefixes."""
    sd = dict(state_dict)
    for key in _WRAPPER_KEYS:
        if key in sd and isinstance(sd[key], Mapping):
            return unwrap(sd[key])
    if sd and all(k.startswith("module.") for k in sd):
        sd = {k[len("module.") :]: v for k, v in sd.items()}
    return sd


def _to_numpy(value: Any) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch.Tensor; torch is only needed by the caller
        value = value.detach().cpu().float().numpy()
    return np.asarray(value, dtype=np.float32)


def _family_module(name: str):
    return importlib.import_module(f"models.{registry.info(name).family}")


def detect_naming(name: str, keys) -> str:
    """Which naming a state dict uses, from the family's own rules ('official' by default)."""
    family = _family_module(name)
    if hasattr(family, "detect_torch_naming"):
        return family.detect_torch_naming(list(keys))
    return "official"


def torch_to_canonical(
    name: str, state_dict: Mapping[str, Any], *, naming: str | None = None
) -> dict[str, np.ndarray]:
    """Converts a PyTorch state dict to canonical (Flax) names and layouts, without a model."""
    sd = {
        k: v
        for k, v in unwrap(state_dict).items()
        if layout.split_key(k)[1] not in layout.TORCH_BOOKKEEPING
    }
    naming = naming or detect_naming(name, sd)
    family = _family_module(name)
    rename = getattr(family, "rename_torch_key", None)
    flat = {}
    for key, value in sd.items():
        array = _to_numpy(value)
        module_path, leaf = layout.split_key(key)
        if rename is not None:
            module_path = rename(name, module_path, naming)
        canonical = f"{module_path}.{layout.torch_leaf_to_canonical(leaf, array.ndim)}"
        if canonical in flat:
            raise ValueError(f"two PyTorch keys map to {canonical!r} (naming {naming!r})")
        flat[canonical] = layout.to_flax_layout(array)
    return flat


def from_torch(
    name: str,
    state_dict: Mapping[str, Any],
    *,
    num_classes: int | None = None,
    naming: str | None = None,
    rngs: nnx.Rngs | None = None,
    **create_kwargs,
) -> nnx.Module:
    """Builds `name` and loads a PyTorch state dict into it (strict; errors name the keys).

    `num_classes` defaults to the classifier width found in the state dict. `naming` is detected
    from the keys unless given ('official' = the authors' code and timm, 'pytorchcv').
    """
    flat = torch_to_canonical(name, state_dict, naming=naming)
    if num_classes is None:
        num_classes = _classifier_width(name, flat)
    return registry.create(name, num_classes=num_classes, rngs=rngs, weights=flat, **create_kwargs)


def _classifier_width(name: str, flat: Mapping[str, np.ndarray]) -> int:
    """The output width of the last dense kernel (dict order = module order in PyTorch)."""
    dense = [v for k, v in flat.items() if k.endswith(".kernel") and v.ndim == 2]
    return int(dense[-1].shape[1]) if dense else registry.info(name).default_num_classes


def load_torch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a user's .pth/.pt (with torch.load(weights_only=True)) or .safetensors file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"PyTorch weights not found: {path}")
    if path.endswith(".safetensors"):
        from safetensors.numpy import load_file

        return load_file(path)
    import torch  # only needed for .pth files

    # weights_only=True refuses arbitrary pickled objects from untrusted files.
    obj = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(obj, Mapping):
        raise ValueError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return unwrap(obj)


def main(argv: list[str] | None = None) -> None:
    """python -m models.torch_import MODEL IN.pth|IN.safetensors OUT.safetensors"""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m models.torch_import",
        description="Convert a PyTorch state dict (official code, timm, pytorchcv) to canonical "
        "weights (.safetensors) that main.py --config.init_from reads.")
    parser.add_argument("model", help="a name from models.names()")
    parser.add_argument("input", help=".pth/.pt (read with weights_only=True) or .safetensors")
    parser.add_argument("output", help="canonical .safetensors to write")
    parser.add_argument("--naming", default=None, help="official | pytorchcv (default: detected)")
    parser.add_argument("--num-classes", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        model = from_torch(args.model, load_torch_file(args.input), naming=args.naming,
                           num_classes=args.num_classes)
    except (KeyError, ValueError, FileNotFoundError) as e:
        parser.exit(2, f"error: {e}\n")
    from models import weights

    weights.save(model, args.output, source=os.path.basename(args.input))
    print(f"wrote {args.output} ({args.model}, {model.num_classes} classes)")


if __name__ == "__main__":
    main()

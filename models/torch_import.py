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
import re
from collections.abc import Mapping
from typing import Any

import numpy as np
from flax import nnx

from models import file_kind, layout, registry, weights_check
from models import weights as weights_lib


class TorchImportError(ValueError):
    """A PyTorch file that cannot be imported; the message is one line saying why and what to do."""


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
    return _convert(name, state_dict, naming=naming)[0]


def _convert(
    name: str, state_dict: Mapping[str, Any], *, naming: str | None = None
) -> tuple[dict[str, np.ndarray], dict[str, tuple[str, tuple[int, ...]]]]:
    """(canonical flat dict, {canonical key: (the file's key, the file's shape)})."""
    sd = {
        k: v
        for k, v in unwrap(state_dict).items()
        if layout.split_key(k)[1] not in layout.TORCH_BOOKKEEPING
    }
    naming = naming or detect_naming(name, sd)
    family = _family_module(name)
    rename = getattr(family, "rename_torch_key", None)
    flat, origin = {}, {}
    for key, value in sd.items():
        array = _to_numpy(value)
        module_path, leaf = layout.split_key(key)
        if rename is not None:
            module_path = rename(name, module_path, naming)
        canonical = f"{module_path}.{layout.torch_leaf_to_canonical(leaf, array.ndim)}"
        if canonical in flat:
            raise ValueError(f"two PyTorch keys map to {canonical!r} (naming {naming!r})")
        flat[canonical] = layout.to_flax_layout(array)
        origin[canonical] = (key, tuple(array.shape))
    return flat, origin


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
    try:
        flat, origin = _convert(name, state_dict, naming=naming)
    except (KeyError, ValueError, IndexError) as e:  # the family's renaming does not apply
        fits = fitting_variants(state_dict, exclude=name)
        raise TorchImportError(
            f"the weights do not fit {name}: its key names cannot be read as {name} "
            f"({type(e).__name__}: {e}){_fits_hint(fits)}"
        ) from None
    if num_classes is None:
        num_classes = _classifier_width(name, flat)
    try:
        return registry.create(
            name, num_classes=num_classes, rngs=rngs, weights=flat, **create_kwargs
        )
    except weights_check.WeightsMismatchError as e:
        raise TorchImportError(_mismatch_message(name, e, origin, state_dict)) from None


def _mismatch_message(
    name: str,
    e: weights_check.WeightsMismatchError,
    origin: Mapping[str, tuple[str, tuple[int, ...]]],
    state_dict: Mapping[str, Any],
) -> str:
    """The mismatch with the file's own key names and shapes next to ours, and the registered
    variant the file fits, if one does."""
    preview = weights_check._preview  # noqa: SLF001  (same list format as every weights error)
    parts = []
    if e.unexpected:
        parts.append(
            f"in the file but not in {name} ({len(e.unexpected)}): "
            + preview([f"{origin[k][0]} (ours would be {k})" for k in e.unexpected])
        )
    if e.missing:
        parts.append(f"in {name} but not in the file ({len(e.missing)}): {preview(e.missing)}")
    if e.mismatched:
        parts.append(
            f"shape mismatches ({len(e.mismatched)}): "
            + preview(
                [
                    f"{origin[k][0]} {list(origin[k][1])} vs ours {k} {list(expected)}"
                    for k, expected, _ in e.mismatched
                ]
            )
        )
    fits = fitting_variants(state_dict, exclude=name)
    return f"the weights do not fit {name}: " + "; ".join(parts) + _fits_hint(fits)


def _fits_hint(fits: list[str]) -> str:
    if fits:
        return f"; the file fits {' and '.join(fits)}: pass that model name instead"
    return "; it fits no registered variant"


def fitting_variants(state_dict: Mapping[str, Any], *, exclude: str = "") -> list[str]:
    """Registered variants the state dict loads into exactly (names and shapes).

    Candidates are found by parameter count (published exact counts at 1000 classes, corrected
    for the file's classifier width), then each is checked against its abstract build."""
    sd = {
        k: v
        for k, v in unwrap(state_dict).items()
        if layout.split_key(k)[1] not in layout.TORCH_BOOKKEEPING
    }
    stats = ("running_mean", "running_var")
    count = sum(
        int(np.prod(np.shape(v))) for k, v in sd.items() if layout.split_key(k)[1] not in stats
    )
    dense = [np.shape(v) for v in sd.values() if len(np.shape(v)) == 2]
    if not dense:
        return []
    classes, features = dense[-1]  # PyTorch Linear weight: [out, in]
    at_1000 = count + (1000 - classes) * (features + 1)
    out = []
    for other in registry.names():
        if other == exclude or registry.info(other).num_params not in (count, at_1000):
            continue
        try:
            flat = torch_to_canonical(other, sd)
            expected = weights_lib.shapes(registry.abstract(other, num_classes=int(classes)))
            weights_check.check_compatible(expected, flat)
        except (ValueError, KeyError):
            continue
        out.append(other)
    return out


def _classifier_width(name: str, flat: Mapping[str, np.ndarray]) -> int:
    """The output width of the last dense kernel (dict order = module order in PyTorch)."""
    dense = [v for k, v in flat.items() if k.endswith(".kernel") and v.ndim == 2]
    return int(dense[-1].shape[1]) if dense else registry.info(name).default_num_classes


def load_torch_file(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Reads a user's .pth/.pt (with torch.load(weights_only=True)) or .safetensors file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(f"PyTorch weights not found: {path}")
    kind = file_kind.kind(path)
    if kind == file_kind.SAFETENSORS:
        from safetensors.numpy import load_file

        return load_file(path)
    if kind != file_kind.PYTORCH:
        raise TorchImportError(f"{path} is {file_kind.describe(path)}")
    import pickle

    import torch  # only needed for .pth files

    # weights_only=True refuses arbitrary pickled objects from untrusted files.
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        found = re.search(r"GLOBAL ([\w.]+)", str(e))
        what = f" ({found.group(1)})" if found else ""
        raise TorchImportError(
            f"{path} holds pickled Python objects{what}, not only tensors, and was refused unread "
            "(unpickling them could run any code); where the model was made, save its weights "
            "alone: torch.save(model.state_dict(), 'weights.pth')"
        ) from None
    except (RuntimeError, EOFError, KeyError) as e:
        raise TorchImportError(
            f"{path} is a damaged PyTorch file ({type(e).__name__}: "
            f"{' '.join(str(e).split())[:200]})"
        ) from None
    if not isinstance(obj, Mapping):
        raise TorchImportError(f"{path} does not hold a state dict (got {type(obj).__name__})")
    return unwrap(obj)


def main(argv: list[str] | None = None) -> None:
    """python -m models.torch_import MODEL IN.pth|IN.safetensors OUT.safetensors"""
    import argparse

    parser = argparse.ArgumentParser(
        prog="python -m models.torch_import",
        description="Convert a PyTorch state dict (official code, timm, pytorchcv) to canonical "
        "weights (.safetensors) that main.py --config.init_from reads.",
    )
    parser.add_argument("model", help="a name from models.names()")
    parser.add_argument("input", help=".pth/.pt (read with weights_only=True) or .safetensors")
    parser.add_argument("output", help="canonical .safetensors to write")
    parser.add_argument("--naming", default=None, help="official | pytorchcv (default: detected)")
    parser.add_argument("--num-classes", type=int, default=None)
    args = parser.parse_args(argv)
    try:
        model = from_torch(
            args.model,
            load_torch_file(args.input),
            naming=args.naming,
            num_classes=args.num_classes,
        )
    except (KeyError, ValueError, FileNotFoundError) as e:
        message = str(e.args[0] if isinstance(e, KeyError) and e.args else e)
        if args.input not in message:
            message = f"{args.input}: {message}"
        parser.exit(2, f"error: {message}\n")
    from models import weights

    weights.save(model, args.output, source=os.path.basename(args.input))
    print(f"wrote {args.output} ({args.model}, {model.num_classes} classes)")


if __name__ == "__main__":
    main()

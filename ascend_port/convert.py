"""Convert weights between the canonical .safetensors format and MindSpore .ckpt.

    python -m ascend_port.convert IN.safetensors OUT.ckpt                # canonical -> MindSpore
    python -m ascend_port.convert IN.ckpt OUT.safetensors [--model NAME]  # MindSpore -> canonical
    python -m ascend_port.convert zoo.ckpt OUT.safetensors --from-zoo hardnet85

Every conversion is strict (same key set, same shapes, errors name the keys) and is checked by
loading the result into a fresh cell: a written .ckpt must load with load_checkpoint +
load_param_into_net(strict_load=True). Reading a .ckpt ignores optimizer state.
"""

from __future__ import annotations

import argparse
import os
import sys

import numpy as np
from absl import logging

from ascend_port import bridge, registry, variants, zoo
from ascend_port import weights as msw
from ascend_port.errors import ArgumentParser, UserError
from models import canonical
from models.weights_check import WeightsMismatchError


def _classifier_width(cell, ms_flat: dict[str, np.ndarray]) -> int | None:
    """Output width of the cell's last dense weight as found in `ms_flat` (None if absent)."""
    dense = [k for k, s in msw.cell_shapes(cell).items() if k.endswith(".weight") and len(s) == 2]
    if dense and dense[-1] in ms_flat:
        return int(ms_flat[dense[-1]].shape[0])
    return None


def _resolve(model: str | None, num_classes: int | None, meta: dict, ms_flat: dict, path: str):
    """(model, num_classes, a fresh cell for them or None). When the class count is read off the
    classifier, the default-width cell built for that is returned for reuse: building a big cell
    takes seconds (HRNet-W64: ~6 s of random init)."""
    recorded = meta.get("model") or meta.get(msw.META_MODEL)
    if model and recorded and model != recorded:
        raise UserError(f"{path} holds {recorded} weights (its metadata says so), not {model}")
    model = model or recorded
    if not model:
        raise UserError(
            f"{path} does not name its model; pass --model (one of {', '.join(registry.names())})"
        )
    try:
        registry.info(model)
    except KeyError as e:
        raise UserError(e.args[0]) from None
    num_classes = num_classes or int(meta.get("num_classes") or meta.get(msw.META_NUM_CLASSES) or 0)
    cell = None
    if not num_classes:
        cell = registry.create(model)
        num_classes = _classifier_width(cell, ms_flat)
        if num_classes != cell.num_classes:
            cell = None
    return model, num_classes, cell


def _as_in_file(
    error: WeightsMismatchError, file_names: dict[str, str], context: str
) -> WeightsMismatchError:
    """The same mismatch with the file's keys spelled as in the file ("ours" where renamed)."""

    def spelled(key: str) -> str:
        theirs = file_names.get(key, key)
        return key if theirs == key else f"{theirs} (ours: {key})"

    return WeightsMismatchError(
        error.missing,
        [spelled(k) for k in error.unexpected],
        [(spelled(k), e, g) for k, e, g in error.mismatched],
        context,
    )


def verify_ckpt(path: str, cell, expected: dict[str, np.ndarray]) -> None:
    """Loads `path` the plain MindSpore way (load_checkpoint + load_param_into_net, strict) into
    a cell that has not been loaded yet, and compares every value."""
    import mindspore as ms

    from ascend_port import ckpt_file

    entries = ckpt_file.load_checkpoint(path)
    not_loaded, unused = ms.load_param_into_net(cell, entries, strict_load=True)
    unused = [k for k in unused if k not in (msw.META_MODEL, msw.META_NUM_CLASSES)]
    if not_loaded or unused:
        raise RuntimeError(f"{path}: parameters not loaded {not_loaded}, unused entries {unused}")
    for name, value in msw.cell_flat(cell).items():
        if not np.array_equal(value, expected[name]):
            raise RuntimeError(f"{path}: {name} differs after reloading")


def canonical_to_ckpt(
    src: str, dst: str, *, model: str | None = None, num_classes: int | None = None
) -> tuple[str, int]:
    """Canonical .safetensors -> MindSpore .ckpt; returns (model, num_classes)."""
    flat, meta = msw.read_canonical(src)
    ms_flat = bridge.canonical_to_ms(flat)
    model, num_classes, cell = _resolve(model, num_classes, meta, ms_flat, src)
    cell = cell or registry.create(model, num_classes=num_classes)
    context = f"{src} -> {model}"
    try:
        bridge.check_compatible(bridge.ms_shapes_to_canonical(msw.cell_shapes(cell)), flat, context)
    except WeightsMismatchError as e:
        shapes = {k: v.shape for k, v in ms_flat.items()}
        raise UserError(str(e) + variants.hint(shapes, model)) from None
    msw.write_ckpt(ms_flat, dst, model=model, num_classes=num_classes)
    verify_ckpt(dst, cell, ms_flat)
    return model, num_classes


def ckpt_to_canonical(
    src: str,
    dst: str,
    *,
    model: str | None = None,
    num_classes: int | None = None,
    from_zoo: str | None = None,
) -> tuple[str, int]:
    """MindSpore .ckpt (ours or a model-zoo one) -> canonical .safetensors; (model, num_classes)."""
    arrays, meta = msw.read_ckpt(src)
    file_names = {k: k for k in arrays}
    arrays, dropped = bridge.drop_optimizer_state(arrays)
    if dropped:
        logging.info(
            "%s: ignored %d optimizer-state entries (%s, ...)", src, len(dropped), dropped[0]
        )
    if from_zoo:
        fmt = zoo.get(from_zoo)
        if model and model != fmt.model:
            raise UserError(f"--from-zoo {from_zoo} holds {fmt.model}, not {model}")
        model = fmt.model
        names = zoo.rename(from_zoo, arrays)
        arrays = {names[k]: v for k, v in arrays.items()}
        file_names = {new: old for old, new in names.items()}
    model, num_classes, cell = _resolve(model, num_classes, meta, arrays, src)
    cell = cell or registry.create(model, num_classes=num_classes)
    try:
        msw.assign(cell, arrays, context=f"{src} -> {model}")  # strict: names and shapes
    except WeightsMismatchError as e:
        error = _as_in_file(e, file_names, f"{src} -> {model}")
        shapes = {k: v.shape for k, v in arrays.items()}
        raise UserError(str(error) + variants.hint(shapes, model)) from None
    canonical.write(bridge.ms_to_canonical(arrays), dst, model=model, num_classes=num_classes)
    return model, num_classes


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m ascend_port.convert",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("src", help="canonical .safetensors or MindSpore .ckpt")
    parser.add_argument("dst", help=".ckpt or .safetensors (the other format)")
    parser.add_argument("--from-zoo", choices=sorted(zoo.FORMATS), help="zoo checkpoint naming")
    parser.add_argument("--model", help="variant name, if the input does not record it")
    parser.add_argument("--num-classes", type=int, help="classifier width, if not recorded")
    args = parser.parse_args(argv)
    logging.use_absl_handler()
    logging.set_verbosity(logging.INFO)
    try:
        return _convert(parser, args)
    except (UserError, FileNotFoundError, WeightsMismatchError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        return 2


def _convert(parser: argparse.ArgumentParser, args: argparse.Namespace) -> int:
    import mindspore as ms

    ms.set_device("CPU")
    ms.set_context(mode=ms.PYNATIVE_MODE)
    kinds = (os.path.splitext(args.src)[1], os.path.splitext(args.dst)[1])
    kw = dict(model=args.model, num_classes=args.num_classes)
    if kinds == (".safetensors", ".ckpt") and not args.from_zoo:
        model, n = canonical_to_ckpt(args.src, args.dst, **kw)
    elif kinds == (".ckpt", ".safetensors"):
        model, n = ckpt_to_canonical(args.src, args.dst, from_zoo=args.from_zoo, **kw)
    else:
        parser.error(
            "convert .safetensors -> .ckpt, or .ckpt -> .safetensors (--from-zoo: .ckpt only)"
        )
    logging.info("wrote %s (%s, %d classes)", args.dst, model, n)
    return 0


if __name__ == "__main__":
    sys.exit(main())

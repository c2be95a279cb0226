"""Training input pipeline throughput: images per second and per CPU core, to size GPU hosts.

    python -m benchmarks.input_pipeline --data folder:/data/imagenet
    python -m benchmarks.input_pipeline --data folder:/tmp/fake --make-data 2000 --workers 1,2

Runs main.py's training pipeline (decode + random-resized crop + flip, then each augmentation
the config can switch on, one at a time) on the host only, no model. `--make-data N` first writes
N random JPEGs of ImageNet's mean size (500x375) into DIR/train/<class>/ (and a few into val/).
A tf.data private thread pool of W workers bounds the cores used; img_per_s_per_core divides
by min(W, cores). Run from the repository root (`python -m`) or after `pip install -e .`.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

# Augmentations measured one at a time on top of the base pipeline, when the config accepts
# them (a field whose feature is not built yet is reported as skipped, with the reason).
AUGMENTATIONS: dict[str, dict[str, Any]] = {
    "randaugment": {"auto_augment": "rand-m9-mstd0.5-inc1"},
    "autoaugment": {"auto_augment": "imagenet"},
    "color_jitter": {"color_jitter": 0.4},
    "random_erase": {"random_erase": 0.25},  # host draws the rectangles; the step fills them
    "mixup": {"mixup": 0.8},
    "cutmix": {"cutmix": 1.0},
}


def make_data(
    root: str, count: int, *, classes: int = 10, size: tuple[int, int] = (500, 375), seed: int = 0
) -> None:
    """Random-noise JPEGs (quality 90): decoding cost matches real photos of that size."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    width, height = size
    # Smooth noise compresses like a photo (pure noise makes 3x larger files, slower to decode).
    for split, n in (("train", count), ("val", max(classes, count // 50))):
        for i in range(n):
            directory = os.path.join(root, split, f"class{i % classes:03d}")
            os.makedirs(directory, exist_ok=True)
            small = rng.integers(0, 256, (height // 8, width // 8, 3), dtype=np.uint8)
            image = Image.fromarray(small).resize((width, height), Image.BILINEAR)
            image.save(os.path.join(directory, f"{i:06d}.jpg"), quality=90)


def measure(
    source: str,
    *,
    workers: int,
    batch: int,
    size: int,
    batches: int,
    warmup: int,
    augmentation: str = "",
    overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    import input_pipeline
    from configs import base
    from train_lib import build
    from train_lib.errors import UserError

    config = base.get_config()
    config.data.source, config.data.image_size = source, size
    config.data.num_workers, config.data.shuffle_buffer = workers, 1024
    config.data.update(overrides or {})
    cores = min(workers, os.cpu_count() or 1) if workers > 0 else os.cpu_count() or 1
    row: dict[str, Any] = {
        "source": source,
        "augmentation": augmentation or "base",
        "batch": batch,
        "image_size": size,
        "workers": workers,
        "cores": cores,
    }
    try:
        config.model.num_classes = input_pipeline.dataset_info(config.data).num_classes
        build.validate(config)
    except UserError as e:
        return {**row, "skipped": str(e)}
    it = input_pipeline.train_batches(config.data, global_batch_size=batch, seed=0)
    for _ in range(warmup):
        next(it)
    start = time.perf_counter()
    for _ in range(batches):
        next(it)
    seconds = time.perf_counter() - start
    rate = batches * batch / seconds
    return {**row, "img_per_s": round(rate, 1), "img_per_s_per_core": round(rate / cores, 1)}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="folder:DIR (or any data.source)")
    parser.add_argument(
        "--make-data",
        type=int,
        default=0,
        metavar="N",
        help="first write N random JPEGs into DIR (folder: sources only)",
    )
    parser.add_argument("--workers", default="1", help="comma-separated tf.data thread counts")
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--batches", type=int, default=10)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument(
        "--augmentations",
        default=",".join(AUGMENTATIONS),
        help="measured one at a time after the base pipeline ('' = none)",
    )
    parser.add_argument("--out", default="", help="also append the JSON lines to this file")
    args = parser.parse_args(argv)
    if args.make_data:
        if not args.data.startswith("folder:"):
            parser.error("--make-data needs --data folder:DIR")
        make_data(args.data.removeprefix("folder:"), args.make_data)
    unknown = [a for a in args.augmentations.split(",") if a and a not in AUGMENTATIONS]
    if unknown:
        parser.error(f"unknown augmentations {unknown}; choose from {', '.join(AUGMENTATIONS)}")
    rows = []
    for workers in [int(w) for w in args.workers.split(",") if w]:
        cases = [("", {})] + [(a, AUGMENTATIONS[a]) for a in args.augmentations.split(",") if a]
        for name, overrides in cases:
            row = measure(
                args.data,
                workers=workers,
                batch=args.batch,
                size=args.size,
                batches=args.batches,
                warmup=args.warmup,
                augmentation=name,
                overrides=overrides,
            )
            print(json.dumps(row), flush=True)
            rows.append(row)
    if args.out:
        with open(args.out, "a") as f:
            f.writelines(json.dumps(r) + "\n" for r in rows)
    from train_lib.benchmark import table

    print(
        table(
            rows,
            (
                "augmentation",
                "workers",
                "cores",
                "batch",
                "image_size",
                "img_per_s",
                "img_per_s_per_core",
                "skipped",
            ),
        )
    )
    return rows


if __name__ == "__main__":
    main()

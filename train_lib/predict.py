"""`main.py --mode=predict`: the top-5 classes of each given image, as a table and as JSON.

The weights are `config.init_from` or the latest checkpoint in the workdir; images go through the
eval preprocessing (input_pipeline.preprocess.eval_image: crop_pct window, antialiased resize,
the model's mean/std and interpolation) and through the model in fixed-size batches (one compile).
A file that does not decode is named on one `warning:` line and skipped; the workdir is not written.
"""

from __future__ import annotations

import functools
import re
import sys
from collections.abc import Iterator, Sequence

import jax
import numpy as np
from ml_collections import ConfigDict

import input_pipeline
import models
from input_pipeline import predict_io
from models import compat
from train_lib import build, steps
from train_lib.errors import UserError
from train_lib.state import SplitModel


def _decoded(
    config: ConfigDict, paths: Sequence[str], skipped: list[dict[str, str]]
) -> Iterator[tuple[str, np.ndarray]]:
    """(path, uint8 HWC eval crop) for each path that decodes; the others land in `skipped`."""
    from input_pipeline.preprocess import eval_image
    from input_pipeline.tf_runtime import tf

    info = models.info(config.model.name)
    kwargs = {
        "size": config.data.image_size,
        "crop_pct": config.data.get("crop_pct") or info.crop_pct,
        "interpolation": config.data.get("interpolation") or info.interpolation,
    }
    for path in paths:
        try:
            with open(path, "rb") as f:
                data = f.read()
            image = eval_image(tf.constant(data), **kwargs).numpy()
        except (OSError, tf.errors.OpError) as e:
            # TF prefixes its op context ({{function_node ...}}, [Op:...]): keep the sentence.
            reason = re.sub(r"\{\{.*?\}\}|\[Op:.*$", "", getattr(e, "message", None) or str(e))
            print(predict_io.skip_warning(path, reason), file=sys.stderr)
            skipped.append({"image": path, "error": " ".join(reason.split())})
            continue
        yield path, image


def _batches(
    items: Iterator[tuple[str, np.ndarray]], size: int
) -> Iterator[tuple[list[str], np.ndarray]]:
    chunk: list[tuple[str, np.ndarray]] = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield [p for p, _ in chunk], np.stack([im for _, im in chunk])
            chunk = []
    if chunk:
        yield [p for p, _ in chunk], np.stack([im for _, im in chunk])


def predict(config: ConfigDict, workdir: str, images: str) -> tuple[list[dict], list[dict]]:
    """(predictions, skipped): [{'image', 'top5': [{'class', 'name', 'prob'}]}], [{'image',
    'error'}] for the images of `images` (comma-separated files and folders)."""
    build.validate(config)
    try:
        paths = predict_io.list_images(images)
    except predict_io.ImagesError as e:
        raise UserError(str(e)) from None
    model = build.trained_model(config, workdir)
    names = predict_io.class_names(config.data, config.model.num_classes)
    if names is None:  # a TFDS dataset other than ImageNet knows its names
        try:
            names = input_pipeline.dataset_info(config.data).class_names
        except Exception:  # noqa: BLE001 - no dataset here: indices are names enough
            names = None
    split = SplitModel(model)
    preprocessing = build.preprocessing(config)

    @functools.partial(jax.jit, compiler_options=compat.cpu_step_compiler_options())
    def forward(params, stats, batch):
        logits, _ = split.apply(params, stats, steps.normalize(batch, **preprocessing), train=False)
        return logits.astype(np.float32)

    batch_size = min(config.train.eval_batch_size or config.train.batch_size, len(paths))
    predictions: list[dict] = []
    skipped: list[dict[str, str]] = []
    for batch_paths, batch in _batches(_decoded(config, paths, skipped), batch_size):
        padded = np.zeros((batch_size, *batch.shape[1:]), batch.dtype)
        padded[: len(batch)] = batch  # a fixed shape: the forward pass compiles once
        logits = np.asarray(forward(split.initial_params, split.initial_stats, padded))
        for path, top in zip(
            batch_paths, predict_io.top_k(logits[: len(batch)], names), strict=True
        ):
            predictions.append({"image": path, "top5": top})
    if not predictions:
        raise UserError(f"none of the {len(paths)} images given by --images could be decoded")
    return predictions, skipped


def run(config: ConfigDict, workdir: str, images: str, predictions_json: str = "") -> dict:
    """Prints the table (and writes predictions_json); returns counts for main.py's last line."""
    predictions, skipped = predict(config, workdir, images)
    if jax.process_index() == 0:
        print(predict_io.format_table(predictions))
        if predictions_json:
            predict_io.write_json(
                predictions_json,
                model=config.model.name,
                weights=config.init_from or f"latest checkpoint in {workdir}",
                predictions=predictions,
                skipped=skipped,
            )
    return {"predicted": len(predictions), "skipped": len(skipped)}

"""Predict with MindSpore: the top-5 classes of each given image, as main.py --mode=predict does.

    python -m ascend_port --mode=predict --config configs/X.py --workdir W --images a.jpg,dir/ \
        [--config.init_from=weights.safetensors] [--predictions_json out.json]

The weights are config.init_from (canonical .safetensors or .ckpt) or the workdir's latest
checkpoint. Images get the eval preprocessing of ascend_port.data (the JAX side's crop window
and antialiased resize, the model's mean/std and interpolation) and go through the cell in
fixed-size batches. The image list, class names, top-5, table and JSON come from
input_pipeline.predict_io, the module main.py uses too. A file that does not decode is named on
one `warning:` line and skipped. `python -m ascend_port.predict` is the same command.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator, Sequence

import mindspore as ms
import numpy as np
from ml_collections import ConfigDict
from PIL import Image

from ascend_port import data, registry
from ascend_port import workdir as wd
from ascend_port.errors import UserError
from ascend_port.eval import load_evaluated, weights_to_evaluate
from input_pipeline import predict_io


def _decoded(
    config: ConfigDict, paths: Sequence[str], skipped: list[dict[str, str]]
) -> Iterator[tuple[str, np.ndarray]]:
    """(path, normalised float32 CHW eval crop) for each path that decodes."""
    p = data.preprocess(config)
    crop = data.CentreCropResize(p.image_size, p.crop_pct, p.interpolation)
    mean = np.asarray(p.mean, np.float32)
    std = np.asarray(p.std, np.float32)
    for path in paths:
        try:
            with Image.open(path) as image:
                pixels = crop(image)
        except (OSError, ValueError, Image.DecompressionBombError) as e:
            print(predict_io.skip_warning(path, str(e)), file=sys.stderr)
            skipped.append({"image": path, "error": " ".join(str(e).split())})
            continue
        yield path, ((pixels.astype(np.float32) - mean) / std).transpose(2, 0, 1)


def predict(
    config: ConfigDict, workdir: str, images: str
) -> tuple[list[dict], list[dict[str, str]], str]:
    """(predictions, skipped, weights path), in predict_io's format."""
    try:
        paths = predict_io.list_images(images)
    except predict_io.ImagesError as e:
        raise UserError(str(e)) from None
    wd.check(workdir, config.model.name, writing=False)
    path = weights_to_evaluate(config, workdir)
    net = registry.create(config.model.name, num_classes=config.model.num_classes)
    load_evaluated(config, net, path)
    net.set_train(False)
    names = predict_io.class_names(config.data, config.model.num_classes)
    batch_size = min(config.train.eval_batch_size or config.train.batch_size, len(paths))
    predictions: list[dict] = []
    skipped: list[dict[str, str]] = []
    chunk: list[tuple[str, np.ndarray]] = []

    def flush() -> None:
        batch = np.stack([x for _, x in chunk])
        padded = np.zeros((batch_size, *batch.shape[1:]), np.float32)  # one graph compile
        padded[: len(batch)] = batch
        logits = net(ms.Tensor(padded)).asnumpy()[: len(batch)]
        for (image, _), top in zip(chunk, predict_io.top_k(logits, names), strict=True):
            predictions.append({"image": image, "top5": top})
        chunk.clear()

    for item in _decoded(config, paths, skipped):
        chunk.append(item)
        if len(chunk) == batch_size:
            flush()
    if chunk:
        flush()
    if not predictions:
        raise UserError(f"none of the {len(paths)} images given by --images could be decoded")
    return predictions, skipped, path


def run(config: ConfigDict, workdir: str, images: str, predictions_json: str = "") -> dict:
    """Prints the table (and writes predictions_json); returns the counts."""
    predictions, skipped, path = predict(config, workdir, images)
    print(predict_io.format_table(predictions))
    if predictions_json:
        predict_io.write_json(
            predictions_json,
            model=config.model.name,
            weights=path,
            predictions=predictions,
            skipped=skipped,
        )
    return {"predicted": len(predictions), "skipped": len(skipped)}


if (
    __name__ == "__main__"
):  # python -m ascend_port.predict: the predict mode of python -m ascend_port
    from ascend_port import cli

    cli.run(default_mode="predict")

"""Predict with MindSpore: the top-5 classes of each given image, as main.py --mode=predict does.

    python -m ascend_port.predict --config configs/X.py --workdir DIR --images a.jpg,dir/ \
        [--config.init_from=weights.safetensors] [--predictions_json out.json] [--device_target CPU]

The weights are config.init_from (canonical .safetensors or .ckpt) or the newest checkpoint in
DIR/checkpoints. Images get the eval preprocessing of ascend_port.data (the JAX side's crop
window and antialiased resize, the model's mean/std and interpolation) and go through the cell in
fixed-size batches. The image list, class names, top-5, table and JSON come from
input_pipeline.predict_io, the module main.py uses too. A file that does not decode is named on
one `warning:` line and skipped.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator, Sequence

import mindspore as ms
import numpy as np
from absl import app, flags
from ml_collections import ConfigDict, config_flags
from PIL import Image

from ascend_port import callbacks, data, registry, runtime
from ascend_port import weights as msw
from input_pipeline import predict_io

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "config file (configs/*.py)", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints/ is read)")
_IMAGES = flags.DEFINE_string("images", None, "image files and folders, comma-separated")
_JSON = flags.DEFINE_string("predictions_json", "", "also write the predictions here")
_TARGET = flags.DEFINE_string(
    "device_target", "", "Ascend | GPU | CPU ('' = config.ascend.device_target)"
)
_EXEC = flags.DEFINE_enum("exec_mode", "graph", ["graph", "pynative"], "MindSpore execution mode")


class PredictError(ValueError):
    """A user mistake (no weights, no readable image): one `error:` line, exit 2."""


def weights_path(config: ConfigDict, workdir: str) -> str:
    """config.init_from, else the newest checkpoint of the run in workdir."""
    if config.init_from:
        if not os.path.isfile(config.init_from):
            raise PredictError(f"init_from={config.init_from}: no such file")
        return config.init_from
    files = callbacks.checkpoint_files(os.path.join(workdir, "checkpoints"))
    if not files:
        raise PredictError(
            f"no checkpoint in {os.path.join(workdir, 'checkpoints')}; train first or pass "
            "--config.init_from=FILE.safetensors"
        )
    return files[-1]


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
        raise PredictError(str(e)) from None
    path = weights_path(config, workdir)
    net = registry.create(config.model.name, num_classes=config.model.num_classes)
    msw.load_weights(net, path)
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
        raise PredictError(f"none of the {len(paths)} images given by --images could be decoded")
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


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    config = _CONFIG.value
    if not _IMAGES.value:
        print("error: --images FILE_OR_DIR[,...] is required", file=sys.stderr)
        sys.exit(2)
    runtime.setup(runtime.device_target(_TARGET.value, config), _EXEC.value)
    try:
        result = run(config, _WORKDIR.value, _IMAGES.value, _JSON.value)
    except PredictError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    print(" ".join(f"{k}={v}" for k, v in result.items()))


if __name__ == "__main__":
    flags.mark_flags_as_required(["config", "workdir"])
    app.run(main)

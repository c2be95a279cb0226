"""Evaluation with MindSpore: top-1 / top-5 / loss over every image of the split exactly once.

    python -m ascend_port --mode=eval --config configs/X.py --workdir W \
        [--config.init_from=FILE] [--config.data.source=folder:/data/imagenet]

Evaluates --config.init_from (canonical .safetensors or MindSpore .ckpt; a training
checkpoint's optimizer state is ignored) or else the workdir's latest checkpoint (its weight
average with --config.export_ema, when trained with train.ema_decay), and writes
W/eval_result.json. Runs on one device; the last batch is kept, not padded or dropped.
`python -m ascend_port.eval` is the same command.
"""

from __future__ import annotations

import numpy as np
from absl import logging
from ml_collections import ConfigDict

from ascend_port import data, registry
from ascend_port import weights as msw
from ascend_port import workdir as wd
from ascend_port.errors import UserError
from train_lib import plots
from train_lib.recipes import checks as recipe_checks


def eval_batch_size(config: ConfigDict) -> int:
    return config.train.eval_batch_size or config.train.batch_size


def data_root(config: ConfigDict) -> str:
    """The ImageFolder root of config.data.source, its classes checked against the model."""
    root = data.resolve_root(config.data.source)
    classes = len(data.class_indexing(config, root))
    # More logits than classes is the zoo's 1001-on-1000 case (one log line); fewer is an error.
    error, note = recipe_checks.class_count(config.model.num_classes, classes, config.data.source)
    if error:
        raise UserError(error)
    if note:
        logging.warning("%s", note)
    return root


def run_eval(config: ConfigDict, net, root: str, *, report_to: str = "", **extra) -> dict:
    """{'loss', 'top1', 'top5', 'examples'} of `net` (put in eval mode, restored after). With
    `report_to` (a workdir), also its eval_result.json (+ `extra`, per-class accuracy, confusion
    matrix) and plots/confusion.png, as the JAX side writes them."""
    was_training = net.training
    net.set_train(False)
    ds, expected = data.eval_dataset(config, root, batch_size=eval_batch_size(config))
    k = min(5, config.model.num_classes)
    seen = top1 = topk = 0
    loss = 0.0
    classes = config.model.num_classes
    confusion = np.zeros((classes, classes), np.int64)  # [true, predicted]
    for images, labels in ds.create_tuple_iterator(num_epochs=1):
        logits = net(images).asnumpy().astype(np.float64)
        labels = labels.asnumpy()
        ranked = np.argsort(-logits, axis=1)[:, :k]
        top1 += int((ranked[:, 0] == labels).sum())
        topk += int((ranked == labels[:, None]).any(axis=1).sum())
        shifted = logits - logits.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss -= float(log_probs[np.arange(len(labels)), labels].sum())
        np.add.at(confusion, (labels, ranked[:, 0]), 1)
        seen += len(labels)
    net.set_train(was_training)
    if seen == 0:
        raise UserError(f"the eval split of {config.data.source} is empty")
    if seen != expected:
        raise RuntimeError(f"evaluated {seen} images, the split has {expected}")
    result = {"loss": loss / seen, "top1": top1 / seen, "top5": topk / seen, "examples": seen}
    if report_to:
        indexing = data.class_indexing(config, root)
        names = sorted(indexing, key=indexing.get)
        plots.write_eval_report(report_to, result, confusion, names, **extra)
    return result


def weights_to_evaluate(config: ConfigDict, workdir: str) -> str:
    """config.init_from, else the workdir's latest checkpoint."""
    if config.init_from:
        return config.init_from
    latest = wd.latest_checkpoint(workdir)
    if latest is None:
        raise UserError(
            f"no checkpoint in {wd.checkpoint_dir(workdir)}; train first or pass "
            "--config.init_from=FILE.safetensors"
        )
    return latest[1]


def load_evaluated(config: ConfigDict, net, path: str):
    """Loads `path` (from weights_to_evaluate) into `net`: the weight average of a workdir's
    checkpoint with config.export_ema (as main.py's eval, export and predict), else its weights."""
    return msw.load_weights(net, path, ema=bool(config.export_ema and not config.init_from))


def evaluate(config: ConfigDict, workdir: str) -> dict:
    """Evaluates config.init_from or the latest checkpoint; writes W/eval_result.json."""
    wd.check(workdir, config.model.name, writing=True)
    path = weights_to_evaluate(config, workdir)
    net = registry.create(config.model.name, num_classes=config.model.num_classes)
    load_evaluated(config, net, path)
    root = data_root(config)
    result = run_eval(config, net, root, report_to=workdir, weights=config.init_from or path)
    logging.info(
        "%s: top-1 %.4f top-5 %.4f over %d images",
        path,
        result["top1"],
        result["top5"],
        result["examples"],
    )
    return result


if __name__ == "__main__":  # python -m ascend_port.eval: the eval mode of python -m ascend_port
    from ascend_port import cli

    cli.run(default_mode="eval")

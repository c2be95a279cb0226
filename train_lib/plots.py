"""The pictures people look at after a run: training curves and the eval confusion matrix.

    python -m train_lib.plots W [W2 ...] [--output compare.png]

writes W/plots/curves.png (and W/plots/confusion.png from W/eval_result.json when it holds a
confusion matrix) for each run; with several runs, one more figure overlays them all (default
<first run>/plots/compare.png). Training calls the same functions at the end of every run (both
sides: main.py and ascend_port), reading only metrics.jsonl and eval_result.json, so this module
imports numpy and matplotlib (headless Agg) and no framework.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from typing import Any

import numpy as np

CONFUSION_MAX_CLASSES = 100  # above this the matrix is unreadable (per-class accuracy still kept)
_IMG_PER_S_KEYS = ("img_per_s", "images_per_sec")  # main.py, ascend_port


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # headless: no display on training machines
    import matplotlib.pyplot as plt

    return plt


def plots_dir(workdir: str) -> str:
    return os.path.join(workdir, "plots")


def read_metrics(workdir: str) -> list[dict[str, Any]]:
    """Rows of W/metrics.jsonl; a row without 'split' is a training row (ascend_port's log).
    A resumed run repeats steps: the last row for a (split, step) wins."""
    path = os.path.join(workdir, "metrics.jsonl")
    rows: dict[tuple[str, int], dict[str, Any]] = {}
    if os.path.exists(path):
        with open(path) as f:
            for line in f:
                line = line.strip()
                if not line:
                    continue
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # a line cut by a crash
                    continue
                row.setdefault("split", "train")
                rows[(row["split"], int(row["step"]))] = row
    return sorted(rows.values(), key=lambda r: (r["step"], r["split"]))


def _series(rows: Sequence[dict], split: str, *keys: str) -> tuple[np.ndarray, np.ndarray]:
    """(steps, values) of the first of `keys` present in the rows of `split`."""
    points = []
    for row in rows:
        if row["split"] != split:
            continue
        value = next((row[k] for k in keys if k in row), None)
        if value is not None:
            points.append((row["step"], float(value)))
    if not points:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*points, strict=True)
    return np.asarray(steps), np.asarray(values)


def _empty(ax, what: str) -> None:
    ax.text(
        0.5,
        0.5,
        f"no {what} logged",
        ha="center",
        va="center",
        transform=ax.transAxes,
        color="grey",
    )


def curves(workdirs: Sequence[str], output: str, labels: Sequence[str] | None = None) -> str:
    """Train loss, eval top-1/top-5, learning rate and img/s against steps, one colour per run."""
    plt = _pyplot()
    labels = list(labels or [os.path.basename(os.path.normpath(w)) or w for w in workdirs])
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5), sharex=True, constrained_layout=True)
    (ax_loss, ax_acc), (ax_lr, ax_speed) = axes
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    seen = {"loss": False, "acc": False, "lr": False, "speed": False}
    for i, (workdir, label) in enumerate(zip(workdirs, labels, strict=True)):
        rows, colour = read_metrics(workdir), colours[i % len(colours)]
        prefix = f"{label} " if len(workdirs) > 1 else ""
        x, y = _series(rows, "train", "loss")
        if len(x):
            ax_loss.plot(x, y, color=colour, label=f"{prefix}train loss")
            seen["loss"] = True
        x, y = _series(rows, "eval", "loss")
        if len(x):
            ax_loss.plot(x, y, "o--", color=colour, label=f"{prefix}eval loss")
        for key, style in (("top1", "o-"), ("top5", "s:")):
            x, y = _series(rows, "eval", key)
            if len(x):
                ax_acc.plot(x, 100 * y, style, color=colour, label=f"{prefix}eval {key}")
                seen["acc"] = True
        x, y = _series(rows, "train", "lr")
        if len(x):
            ax_lr.plot(x, y, color=colour, label=label)
            seen["lr"] = True
        x, y = _series(rows, "train", *_IMG_PER_S_KEYS)
        if len(x):
            ax_speed.plot(x, y, ".-", color=colour, label=label)
            seen["speed"] = True
    titles = {
        "loss": (ax_loss, "Loss", "cross-entropy"),
        "acc": (ax_acc, "Eval accuracy", "accuracy (%)"),
        "lr": (ax_lr, "Learning rate", "learning rate"),
        "speed": (ax_speed, "Throughput (global batch)", "images / s"),
    }
    for key, (ax, title, ylabel) in titles.items():
        ax.set_title(title)
        ax.set_xlabel("training step")
        ax.tick_params(labelbottom=True)  # sharex hides the top row's step labels
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if not seen[key]:
            _empty(ax, title.lower())
        elif key in ("loss", "acc") or len(workdirs) > 1:
            ax.legend(fontsize="small")
    if seen["acc"]:
        ax_acc.set_ylim(0, 102)  # a 100% marker stays whole
    if seen["lr"]:
        ax_lr.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
    fig.suptitle("Training curves: " + ", ".join(labels))
    return _save(fig, output)


def confusion(
    matrix: np.ndarray, class_names: Sequence[str] | None, output: str, title: str = ""
) -> str:
    """Rows = true class, columns = predicted; colour = share of the row (recall on the
    diagonal), counts written in the cells when there are few classes."""
    plt = _pyplot()
    matrix = np.asarray(matrix, np.int64)
    n = matrix.shape[0]
    names = list(class_names) if class_names is not None else []
    names += [str(i) for i in range(len(names), n)]  # logits past the dataset's classes
    share = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(4.0 + 0.22 * n, 22.0)
    fig, ax = plt.subplots(figsize=(side + 1.5, side), constrained_layout=True)
    image = ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, label="share of the true class's images")
    every = max(1, int(np.ceil(n / 30)))  # at most ~30 labelled ticks
    ticks = np.arange(0, n, every)
    short = [names[i] if len(names[i]) <= 14 else names[i][:13] + "…" for i in ticks]
    ax.set_xticks(ticks, short, rotation=90 if n > 10 else 0)
    ax.set_yticks(ticks, short)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    if n <= 20:
        for (r, c), count in np.ndenumerate(matrix):
            if count:
                ax.text(
                    c,
                    r,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=8,
                    color="white" if share[r, c] > 0.5 else "black",
                )
    total, correct = int(matrix.sum()), int(np.trace(matrix))
    ax.set_title(
        title or f"Confusion matrix: top-1 {correct / max(total, 1):.2%} of {total} images"
    )
    return _save(fig, output)


def _save(fig, output: str) -> str:
    os.makedirs(os.path.dirname(os.path.abspath(output)), exist_ok=True)
    fig.savefig(output, dpi=100)
    _pyplot().close(fig)
    return output


def per_class(matrix: np.ndarray, class_names: Sequence[str] | None) -> list[dict[str, Any]]:
    """[{'class', 'name', 'count', 'top1'}] from a confusion matrix (rows = true class)."""
    matrix = np.asarray(matrix)
    counts, correct = matrix.sum(axis=1), np.diag(matrix)
    return [
        {
            "class": i,
            # model.num_classes may exceed the dataset's classes (the zoo's 1001 logits)
            "name": class_names[i] if class_names is not None and i < len(class_names) else str(i),
            "count": int(counts[i]),
            "top1": float(correct[i] / counts[i]) if counts[i] else None,
        }
        for i in range(matrix.shape[0])
    ]


def write_eval_report(
    workdir: str,
    result: dict[str, Any],
    matrix: np.ndarray,
    class_names: Sequence[str] | None,
    **extra: Any,
) -> str:
    """W/eval_result.json (the metrics, per-class accuracy, and the confusion matrix up to
    CONFUSION_MAX_CLASSES classes) and W/plots/confusion.png (same class limit)."""
    matrix = np.asarray(matrix).round().astype(np.int64)
    report = {**extra, **result, "per_class": per_class(matrix, class_names)}
    if matrix.shape[0] <= CONFUSION_MAX_CLASSES:
        report["confusion"] = matrix.tolist()
        confusion(matrix, class_names, os.path.join(plots_dir(workdir), "confusion.png"))
    os.makedirs(workdir, exist_ok=True)
    path = os.path.join(workdir, "eval_result.json")
    fd, tmp = tempfile.mkstemp(dir=workdir, prefix=".tmp-eval_result-")
    with os.fdopen(fd, "w") as f:  # write, then rename: readers never see half a file
        json.dump(report, f, indent=2)
    os.replace(tmp, path)
    return path


def write_curves(workdir: str) -> str:
    """W/plots/curves.png from W/metrics.jsonl (what every run draws at its end)."""
    return curves([workdir], os.path.join(plots_dir(workdir), "curves.png"))


def write_run_plots(workdir: str) -> list[str]:
    """curves.png of one run, and confusion.png again from its eval_result.json if it has one."""
    written = [write_curves(workdir)]
    path = os.path.join(workdir, "eval_result.json")
    if os.path.exists(path):
        with open(path) as f:
            report = json.load(f)
        if "confusion" in report:
            names = [c["name"] for c in report.get("per_class", [])] or None
            written.append(
                confusion(
                    np.asarray(report["confusion"]),
                    names,
                    os.path.join(plots_dir(workdir), "confusion.png"),
                )
            )
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m train_lib.plots", description=__doc__.split("\n\n")[0]
    )
    parser.add_argument("workdirs", nargs="+", help="run directories holding metrics.jsonl")
    parser.add_argument("--output", default="", help="overlay figure of several runs")
    args = parser.parse_args(argv)
    missing = [w for w in args.workdirs if not os.path.exists(os.path.join(w, "metrics.jsonl"))]
    if missing:
        print(f"error: no metrics.jsonl in {', '.join(missing)}", file=sys.stderr)
        return 2
    for workdir in args.workdirs:
        for path in write_run_plots(workdir):
            print(path)
    if len(args.workdirs) > 1:
        output = args.output or os.path.join(plots_dir(args.workdirs[0]), "compare.png")
        print(curves(args.workdirs, output))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What users do after training: predict on both sides, the plots, TensorBoard events.

One short digits training (the conftest fixture digits_run) serves the predict, plot and
TensorBoard tests; the MindSpore half runs in $HHL_ASCEND_PYTHON's interpreter.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from input_pipeline import digits, predict_io
from tests.fake_data import imagenet_wnids, make_folder
from tests.test_ascend_port import ascend_python, python_path

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# The scalars MetricWriter writes (README, "Metrics and pictures").
TENSORBOARD_TAGS = {
    "train/loss",
    "train/top1",
    "train/lr",
    "train/img_per_s",
    "eval/loss",
    "eval/top1",
    "eval/top5",
    "eval/examples",
}

pytestmark = pytest.mark.xdist_group("digits_run")  # shares the conftest fixture digits_run


def _run(args, *, python=sys.executable, timeout=600) -> subprocess.CompletedProcess:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "PYTHONPATH": python_path(ROOT)}
    return subprocess.run(
        [python, *args], capture_output=True, text=True, env=env, timeout=timeout, cwd=ROOT
    )


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


def _val_images(dest, per_class: int) -> list[tuple[str, int]]:
    """Copies the first `per_class` val images of each digit into dest; (path, digit)."""
    root = os.path.join(digits.default_root(), "val")
    os.makedirs(dest, exist_ok=True)
    picked = []
    for digit in range(10):
        for name in sorted(os.listdir(os.path.join(root, str(digit))))[:per_class]:
            path = os.path.join(dest, f"{digit}_{name}")
            shutil.copy(os.path.join(root, str(digit), name), path)
            picked.append((path, digit))
    return picked


# --------------------------------------------------------------------------- predict
def test_predict_is_right_and_the_same_on_both_sides(tmp_path, digits_run):
    """main.py --mode=predict (latest checkpoint) names the right digit for most val images; the
    MindSpore side on the exported weights gives the same top-5 classes and probabilities
    (to 1e-4); an undecodable file is one warning line on each side and is skipped."""
    picked = _val_images(tmp_path / "images", per_class=2)
    (tmp_path / "images" / "broken.jpg").write_bytes(b"not an image at all\n")
    extra = tmp_path / "extra.jpg"  # a file named directly, after the folder
    shutil.copy(picked[0][0], extra)
    images = f"{tmp_path / 'images'},{extra}"
    jax_json, ms_json = tmp_path / "jax.json", tmp_path / "ms.json"
    jax = _ok(
        _run(
            [
                "main.py",
                "--mode=predict",
                "--config",
                "configs/demo.py",
                "--workdir",
                str(digits_run["workdir"]),
                "--images",
                images,
                "--predictions_json",
                str(jax_json),
            ]
        )
    )
    ms = _ok(
        _run(
            [
                "-m",
                "ascend_port",
                "--mode=predict",
                "--config",
                "configs/demo.py",
                "--workdir",
                str(tmp_path / "unused"),
                f"--config.init_from={digits_run['export']}",
                "--config.ascend.device_target=CPU",
                "--config.ascend.mode=pynative",
                "--images",
                images,
                "--predictions_json",
                str(ms_json),
            ],
            python=ascend_python(),
        )
    )
    for proc in (jax, ms):
        warnings = [line for line in proc.stderr.splitlines() if line.startswith("warning:")]
        assert len(warnings) == 1 and "broken.jpg" in warnings[0], proc.stderr[-3000:]
        assert "predicted=21 skipped=1" in proc.stdout
    assert f"{picked[0][0]}\n  1." in jax.stdout  # the table: path, then ranked rows

    ours, theirs = json.loads(jax_json.read_text()), json.loads(ms_json.read_text())
    assert [p["image"] for p in ours["predictions"]] == [p for p, _ in picked] + [str(extra)]
    assert [s["image"] for s in ours["skipped"]] == [str(tmp_path / "images" / "broken.jpg")]
    truth = [d for _, d in picked] + [picked[0][1]]
    top1 = [p["top5"][0]["name"] for p in ours["predictions"]]
    right = sum(name == str(d) for name, d in zip(top1, truth, strict=True))
    assert right >= 0.8 * len(truth), (right, top1)
    for a, b in zip(ours["predictions"], theirs["predictions"], strict=True):
        assert a["image"] == b["image"]
        assert [e["class"] for e in a["top5"]] == [e["class"] for e in b["top5"]], (a, b)
        np.testing.assert_allclose(
            [e["prob"] for e in a["top5"]], [e["prob"] for e in b["top5"]], atol=1e-4
        )
        assert len(a["top5"]) == 5 and all(e["name"] == str(e["class"]) for e in a["top5"])


@pytest.mark.parametrize("side", ["jax", "mindspore"])
def test_predict_bad_images_path_is_one_error_line(tmp_path, side):
    """With an ImageNet recipe (a tfds source, which the MindSpore side cannot read: predict
    reads no dataset) and a path that is not there: one error line, exit 2, nothing written."""
    missing = str(tmp_path / "no_such_dir")
    common = ["--config", "configs/hardnet39ds.py", "--workdir", str(tmp_path / "w")]
    if side == "jax":
        cli, python = ["main.py", "--mode=predict"], sys.executable
    else:  # overrides follow --config
        cli, python = ["-m", "ascend_port.predict"], ascend_python()
        common.append("--config.ascend.device_target=CPU")
    for images, message in (
        ([f"--images={missing}"], f"error: --images: {missing} is neither a file nor a folder"),
        ([], "error: --mode=predict needs --images FILE_OR_DIR[,...]"),
    ):
        proc = _run([*cli, *common, *images], python=python)
        assert proc.returncode == 2, proc.stderr[-3000:]
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert lines[-1] == message, lines
        assert "Traceback" not in proc.stderr
    assert not (tmp_path / "w").exists()  # workdir untouched (not even created)


def test_image_list_and_class_names(tmp_path):
    make_folder(tmp_path / "data", {"train": {"cat": 1, "dog": 1}, "val": {"ant": 1, "dog": 1}})
    (tmp_path / "data" / "val" / "dog" / "notes.txt").write_text("not an image")
    listed = predict_io.list_images(
        f"{tmp_path / 'data' / 'val'}, {tmp_path / 'data/train/cat/000.JPEG'}"
    )
    assert listed == [
        str(tmp_path / "data/val/ant/000.JPEG"),
        str(tmp_path / "data/val/dog/000.JPEG"),
        str(tmp_path / "data/train/cat/000.JPEG"),
    ]
    (tmp_path / "empty").mkdir()
    with pytest.raises(predict_io.ImagesError, match="holds no image files"):
        predict_io.list_images(str(tmp_path / "empty"))
    with pytest.raises(predict_io.ImagesError, match="is empty"):
        predict_io.list_images(" , ")

    class Data:  # the fields of config.data that class_names reads
        def __init__(self, source):
            self.source, self.train_split, self.eval_split = source, "train", "validation"

    assert predict_io.class_names(Data(f"folder:{tmp_path / 'data'}"), 3) == ("ant", "cat", "dog")
    assert predict_io.class_names(Data(f"folder:{tmp_path / 'data'}"), 5) is None  # count differs
    assert predict_io.class_names(Data("digits"), 10) == tuple("0123456789")
    names = predict_io.class_names(Data("tfds:imagenet2012"), 1000)
    assert names[0] == "tench, Tinca tinca" and names[1] == "goldfish, Carassius auratus"
    # The table's order is TFDS's label order (the builder's labels.txt).
    assert list(predict_io.imagenet_wnids()) == imagenet_wnids(1000)
    top = predict_io.top_k(np.asarray([[0.0, 3.0, 1.0]]), ("a", "b", "c"), k=5)[0]
    assert [e["name"] for e in top] == ["b", "c", "a"]
    assert abs(sum(e["prob"] for e in top) - 1.0) < 1e-12


# --------------------------------------------------------------------------- plots
def _assert_png(path, min_side=300, max_side=3000) -> None:
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n", path
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert min_side <= min(image.size) and max(image.size) <= max_side, image.size


def test_run_writes_curves_confusion_and_per_class_accuracy(digits_run):
    workdir = digits_run["workdir"]
    _assert_png(workdir / "plots" / "curves.png")
    _assert_png(workdir / "plots" / "confusion.png")
    report = json.loads((workdir / "eval_result.json").read_text())
    confusion = np.asarray(report["confusion"])
    assert confusion.shape == (10, 10)
    assert confusion.sum() == report["examples"] == digits.NUM_VAL
    assert abs(np.trace(confusion) / confusion.sum() - report["top1"]) < 1e-9
    assert [c["name"] for c in report["per_class"]] == [str(i) for i in range(10)]
    assert sum(c["count"] for c in report["per_class"]) == digits.NUM_VAL
    assert report["per_class"][3]["top1"] == confusion[3, 3] / confusion[3].sum()
    assert report["step"] == 60


def test_plots_cli_overlays_runs_and_reads_ascend_logs(tmp_path, digits_run):
    """The MindSpore environment runs the plotting module (it imports no framework) on an
    ascend_port-style log (no 'split', images_per_sec) and on a JAX run, overlaid."""
    ascend = tmp_path / "ascend_run"
    ascend.mkdir()
    with open(ascend / "metrics.jsonl", "w") as f:
        for step in range(10, 70, 10):
            f.write(
                json.dumps(
                    {
                        "step": step,
                        "epoch": 1,
                        "loss": 2.0 / step,
                        "lr": 0.01,
                        "images_per_sec": 50.0 + step,
                    }
                )
                + "\n"
            )
        f.write(json.dumps({"step": 60, "split": "eval", "top1": 0.5, "top5": 0.9}) + "\n")
    proc = _ok(
        _run(
            ["-m", "train_lib.plots", str(ascend), str(digits_run["workdir"])],
            python=ascend_python(),
            timeout=300,
        )
    )
    assert "Traceback" not in proc.stderr
    _assert_png(ascend / "plots" / "curves.png")
    _assert_png(ascend / "plots" / "compare.png")
    assert not (ascend / "plots" / "confusion.png").exists()  # no eval_result.json there
    bad = _run(["-m", "train_lib.plots", str(tmp_path / "nothing")], timeout=300)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        f"error: no metrics.jsonl in {tmp_path / 'nothing'}"
    ]


# --------------------------------------------------------------------------- TensorBoard
def test_tensorboard_events_hold_the_documented_tags(digits_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    events = EventAccumulator(str(digits_run["workdir"] / "tensorboard"))
    events.Reload()
    # tf.summary.scalar writes tensor summaries; TensorBoard reads them as scalars.
    tags = set(events.Tags()["tensors"]) | set(events.Tags()["scalars"])
    assert tags == TENSORBOARD_TAGS
    loss = [(e.step, float(np.asarray(_value(e)))) for e in events.Tensors("train/loss")]
    assert [s for s, _ in loss] == [20, 40, 60] and loss[-1][1] < loss[0][1]
    top1 = [float(_value(e)) for e in events.Tensors("eval/top1")]
    assert top1 == [pytest.approx(digits_run["result"]["top1"], abs=1e-6)]
    readme = open(os.path.join(ROOT, "README.md")).read()
    documented = set(re.findall(r"`((?:train|eval)/\w+)`", readme))
    assert documented == TENSORBOARD_TAGS, documented


def _value(event) -> np.ndarray:
    from tensorboard.util import tensor_util

    return tensor_util.make_ndarray(event.tensor_proto)

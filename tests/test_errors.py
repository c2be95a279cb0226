"""Every user mistake is one line `error: ...`, exit code 2, no traceback, and the workdir as it
was: main.py run as a user runs it (a subprocess), one parametrized test per group of mistakes."""

from __future__ import annotations

import contextlib
import inspect
import os
import subprocess
import textwrap

import pytest

import models
from configs import demo
from tests import cli
from tests.test_ascend_port import ascend_python
from train_lib import config_checks
from train_lib.errors import UserError

DEMO = ("--config", "configs/demo.py")


def _existing_workdir(tmp_path) -> str:
    """A workdir with a file in it, so that 'untouched' has something to compare."""
    workdir = tmp_path / "w"
    workdir.mkdir()
    (workdir / "notes.txt").write_text("mine\n")
    return str(workdir)


# --------------------------------------------------------------------------- config values
CONFIG_MISTAKES = {
    "missing config file": (("--config", "configs/nope.py"), {}, ("configs/nope.py", "no such file")),
    "batch size 0": ((*DEMO, "--config.train.batch_size=0"), {}, ("train.batch_size=0",)),
    "batch size -8": ((*DEMO, "--config.train.batch_size=-8"), {}, ("train.batch_size=-8",)),
    "eval batch vs 8 devices (jit)": (
        (*DEMO, "--config.train.eval_batch_size=12"), {"JAX_NUM_CPU_DEVICES": "8"},
        ("train.eval_batch_size=12", "8 devices")),
    "eval batch vs 8 devices (pmap)": (
        (*DEMO, "--config.train.eval_batch_size=12", "--config.parallel.mode=pmap"),
        {"JAX_NUM_CPU_DEVICES": "8"}, ("train.eval_batch_size=12", "8 devices", "pmap")),
    "drop path rate on hardnet": (
        (*DEMO, "--config.model.drop_path_rate=0.1"), {}, ("drop_path_rate", "hardnet39ds", "drop_rate")),
    "drop rate on hlg": (
        ("--config", "configs/hlg_tiny.py", "--config.model.drop_rate=0.1"), {},
        ("model.drop_rate", "hlg_tiny", "drop_path_rate")),
    "image size of a 224-only model": (
        ("--config", "configs/hlg_tiny.py", "--config.data.image_size=64"), {},
        ("data.image_size=64", "hlg_tiny", "224")),
    "malformed data.source": ((*DEMO, "--config.data.source=imagenet"), {}, ("'imagenet'", "tfds:")),
}


@pytest.mark.parametrize("case", CONFIG_MISTAKES)
def test_config_mistake_is_one_line_before_anything_runs(tmp_path, case):
    args, env, needles = CONFIG_MISTAKES[case]
    workdir = _existing_workdir(tmp_path)
    before = cli.snapshot(workdir)
    proc = cli.run_main(*args, "--workdir", workdir, env=env)
    cli.assert_one_line_error(proc, *needles)
    assert cli.snapshot(workdir) == before


def test_unloadable_config_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from configs import base\nraise ImportError('no module named nope')\n")
    proc = cli.run_main("--config", str(broken), "--workdir", str(tmp_path / "w"))
    cli.assert_one_line_error(proc, str(broken), "could not be loaded", "no module named nope")
    assert not (tmp_path / "w").exists()


# --------------------------------------------------------------------------- workdir
@contextlib.contextmanager
def _read_only(directory: str):
    """`directory` made read-only for this process: by mode bits, or for root (whom mode bits do
    not stop) by a read-only bind mount."""
    if os.geteuid() != 0:
        os.chmod(directory, 0o555)
        try:
            yield
        finally:
            os.chmod(directory, 0o755)
        return
    subprocess.run(["mount", "--bind", directory, directory], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", directory], check=True)
        yield
    finally:
        subprocess.run(["umount", directory], check=True)


def test_workdir_that_is_a_file_is_one_line(tmp_path):
    path = tmp_path / "runs"
    path.write_text("not a directory\n")
    proc = cli.run_main(*DEMO, "--workdir", str(path))
    cli.assert_one_line_error(proc, str(path), "is a file")
    assert path.read_text() == "not a directory\n"


def test_read_only_workdir_is_one_line(tmp_path):
    workdir = _existing_workdir(tmp_path)
    before = cli.snapshot(workdir)
    with _read_only(workdir):
        proc = cli.run_main(*DEMO, "--workdir", workdir)
    cli.assert_one_line_error(proc, workdir, "not writable")
    assert cli.snapshot(workdir) == before


# --------------------------------------------------------------------------- framework-free checks
def test_capabilities_agree_with_the_registry():
    """The framework-free table knows every variant, its fixed input size and the rates its
    builder takes (read from the builder's signature)."""
    assert config_checks.model_names() == models.names()
    for name in models.names():
        info, caps = models.info(name), config_checks.capabilities(name)
        assert caps.family == info.family
        assert (caps.fixed_input_size is not None) == (info.input_sizes == "fixed"), name
        taken = {p for p in inspect.signature(info.builder).parameters if p.endswith("_rate")}
        assert caps.options == taken, name


def test_batch_sizes_are_checked_against_processes_and_devices():
    c = demo.get_config()
    c.train.batch_size = 12
    config_checks.check(c, device_count=4, process_count=2)
    with pytest.raises(UserError, match="5 processes"):
        config_checks.check(c, device_count=10, process_count=5)
    with pytest.raises(UserError, match="8 devices"):
        config_checks.check(c, device_count=8, process_count=2)


def test_mindspore_environment_runs_the_same_checks():
    """The MindSpore CLIs call the same module: it imports there (no jax, no TensorFlow) and
    refuses the same mistakes."""
    script = textwrap.dedent("""
        import sys
        from configs import demo
        from train_lib import config_checks
        from train_lib.errors import UserError
        c = demo.get_config()
        config_checks.check(c, device_count=1)
        c.model.drop_path_rate = 0.1
        try:
            config_checks.check(c, device_count=1)
        except UserError as e:
            print(e)
        heavy = sorted(m for m in sys.modules if m.split(".")[0] in ("jax", "flax", "tensorflow"))
        print(heavy)
    """)
    proc = subprocess.run([ascend_python(), "-c", script], capture_output=True, text=True,
                          cwd=cli.ROOT, env={**os.environ, "PYTHONPATH": cli.ROOT}, timeout=120)
    assert proc.returncode == 0, proc.stderr[-3000:]
    message, heavy = proc.stdout.strip().splitlines()
    assert "hardnet39ds (hardnet) has no drop_path_rate" in message
    assert heavy == "[]"

"""Every user mistake is one line `error: ...`, exit code 2, no traceback, and the workdir as it
was: main.py run as a user runs it (a process of its own), one parametrized test per group of
mistakes. Runs that fail before they train are forked from a server that has imported main.py's
libraries (tests/cli.run_main_forked); the trainings, and the runs that set JAX_NUM_CPU_DEVICES,
start a fresh interpreter (tests/cli.run_main)."""

from __future__ import annotations

import contextlib
import inspect
import json
import os
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest

import models
from configs import demo
from tests import cli
from tests.test_ascend_port import ascend_env, ascend_python
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
# (Batch size 0 and a drop path rate on HarDNet: SHARED_MISTAKES of tests/test_ascend_port.py,
# which runs main.py and the MindSpore CLI on them and asserts the same.)
CONFIG_MISTAKES = {
    "missing config file": (
        ("--config", "configs/nope.py"),
        {},
        ("configs/nope.py", "no such file"),
    ),
    "batch size -8": ((*DEMO, "--config.train.batch_size=-8"), {}, ("train.batch_size=-8",)),
    "eval batch vs 8 devices (jit)": (
        (*DEMO, "--config.train.eval_batch_size=12"),
        {"JAX_NUM_CPU_DEVICES": "8"},
        ("train.eval_batch_size=12", "8 devices"),
    ),
    "eval batch vs 8 devices (pmap)": (
        (*DEMO, "--config.train.eval_batch_size=12", "--config.parallel.mode=pmap"),
        {"JAX_NUM_CPU_DEVICES": "8"},
        ("train.eval_batch_size=12", "8 devices", "pmap"),
    ),
    "drop rate on hlg": (
        ("--config", "configs/hlg_tiny.py", "--config.model.drop_rate=0.1"),
        {},
        ("model.drop_rate", "hlg_tiny", "drop_path_rate"),
    ),
    "image size of a 224-only model": (
        ("--config", "configs/hlg_tiny.py", "--config.data.image_size=64"),
        {},
        ("data.image_size=64", "hlg_tiny", "224"),
    ),
    "malformed data.source": (
        (*DEMO, "--config.data.source=imagenet"),
        {},
        ("'imagenet'", "tfds:"),
    ),
    "unknown optimizer": (
        (*DEMO, "--config.optim.name=lamb"),
        {},
        ("optim.name='lamb'", "sgd, rmsprop, adamw"),
    ),
    "log period in steps and in epochs": (
        (*DEMO, "--config.train.log_every_epochs=0.5"),
        {},
        ("train.log_every_steps=10", "train.log_every_epochs=0.5", "to 0"),
    ),
}


@pytest.mark.parametrize("case", CONFIG_MISTAKES)
def test_config_mistake_is_one_line_before_anything_runs(tmp_path, case):
    args, env, needles = CONFIG_MISTAKES[case]
    workdir = _existing_workdir(tmp_path)
    before = cli.snapshot(workdir)
    if env:  # variables jax reads at import: a fresh interpreter
        proc = cli.run_main(*args, "--workdir", workdir, env=env)
    else:
        proc = cli.run_main_forked(*args, "--workdir", workdir)
    cli.assert_one_line_error(proc, *needles)
    assert cli.snapshot(workdir) == before


def test_unloadable_config_file_is_one_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("from configs import base\nraise ImportError('no module named nope')\n")
    proc = cli.run_main_forked("--config", str(broken), "--workdir", str(tmp_path / "w"))
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
    proc = cli.run_main_forked(*DEMO, "--workdir", str(path))
    cli.assert_one_line_error(proc, str(path), "is a file")
    assert path.read_text() == "not a directory\n"


def test_read_only_workdir_is_one_line(tmp_path):
    workdir = _existing_workdir(tmp_path)
    before = cli.snapshot(workdir)
    with _read_only(workdir):
        proc = cli.run_main_forked(*DEMO, "--workdir", workdir)
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
    proc = subprocess.run(
        [ascend_python(), "-c", script],
        capture_output=True,
        text=True,
        cwd=cli.ROOT,
        env=ascend_env(),
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    message, heavy = proc.stdout.strip().splitlines()
    assert "hardnet39ds (hardnet) has no drop_path_rate" in message
    assert heavy == "[]"


# --------------------------------------------------------------------------- resume, divergence
SHORT_RUN = (
    "--config.train.checkpoint_every_steps=5",
    "--config.train.log_every_steps=5",
    "--config.train.tensorboard=False",
    "--config.train.eval_every_epochs=100",
)


def _committed_weights(checkpoint_dir) -> dict[int, dict]:
    """{step: restored weights} of every committed checkpoint, read back with orbax."""
    import orbax.checkpoint as ocp

    manager = ocp.CheckpointManager(str(checkpoint_dir))
    try:
        return {
            step: manager.restore(
                step, args=ocp.args.Composite(weights=ocp.args.StandardRestore())
            )["weights"]
            for step in manager.all_steps()
        }
    finally:
        manager.close()


@pytest.mark.slow  # main.py trainings in subprocesses
@pytest.mark.xdist_group("subprocess_training")
def test_resume_refuses_changed_config_and_divergence_commits_nothing(tmp_path):
    """A 5-step run; a rerun with another lr is refused (workdir untouched) unless
    --allow_config_change; at lr 1e6 it diverges: one line naming the step and the last good
    checkpoint, exit 2, and every committed checkpoint is finite."""
    workdir = str(tmp_path / "w")
    first = cli.run_main(
        *DEMO, "--workdir", workdir, *SHORT_RUN, "--config.train.stop_after_steps=5"
    )
    assert first.returncode == 0, first.stderr[-3000:]
    before = cli.snapshot(workdir)

    changed = (*DEMO, "--workdir", workdir, *SHORT_RUN, "--config.schedule.lr_max=1e6")
    proc = cli.run_main_forked(*changed)
    cli.assert_one_line_error(proc, "schedule.lr_max: 0.05 -> 1000000.0", "--allow_config_change")
    assert cli.snapshot(workdir) == before

    proc = cli.run_main(*changed, "--allow_config_change")
    checkpoints = os.path.join(workdir, "checkpoints")
    cli.assert_one_line_error(proc, "diverged", "step 10", f"step 5 in {checkpoints}")
    weights = _committed_weights(checkpoints)
    assert sorted(weights) == [5]
    for step, tree in weights.items():
        leaves = [np.asarray(x) for x in jax.tree.leaves(tree)]
        assert leaves and all(np.isfinite(x).all() for x in leaves), step
    rows = [json.loads(line) for line in open(os.path.join(workdir, "metrics.jsonl"))]
    train_steps = [r["step"] for r in rows if r["split"] == "train"]
    assert train_steps == sorted(set(train_steps))  # one row per step


def test_metrics_rows_past_the_resumed_step_are_dropped(tmp_path):
    """A run killed after logging step 12 but committing step 10 replays 11-12: their old rows go,
    and a line cut short by the kill too."""
    from train_lib.metrics import MetricWriter

    path = tmp_path / "metrics.jsonl"
    rows = [{"step": s, "split": "train", "loss": 1.0} for s in (5, 10, 12)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows) + '{"step": 1')
    MetricWriter(str(tmp_path), tensorboard=False, start_step=10).close()
    assert [json.loads(line)["step"] for line in path.read_text().splitlines()] == [5, 10]


# --------------------------------------------------------------------------- weight files
def _torch_files(directory) -> dict[str, str]:
    """A state dict .pth (hardnet39ds, 10 classes, pytorchcv), a pickled whole model, a pickle
    whose unpickling would create a marker file, garbage, an empty and a truncated safetensors."""
    import pickle

    import torch
    from pytorchcv.model_provider import get_model
    from safetensors.numpy import save_file

    d = str(directory)
    paths = {
        k: os.path.join(d, v)
        for k, v in {
            "state_dict": "h39.pth",
            "whole": "whole.pth",
            "malicious": "evil.pth",
            "garbage": "garbage.bin",
            "empty": "empty.safetensors",
            "truncated": "cut.safetensors",
            "marker": "pwned",
        }.items()
    }
    torch.save(
        get_model("hardnet39ds", pretrained=False, num_classes=10).state_dict(), paths["state_dict"]
    )
    torch.save(torch.nn.Linear(2, 2), paths["whole"])

    class Evil:
        def __reduce__(self):
            return (open, (paths["marker"], "w"))

    with open(paths["malicious"], "wb") as f:
        pickle.dump({"w": Evil()}, f, protocol=2)
    with open(paths["garbage"], "wb") as f:
        f.write(b"not weights at all\n" * 10)
    open(paths["empty"], "wb").close()
    save_file({"w": np.zeros((64, 64), np.float32)}, paths["truncated"])
    with open(paths["truncated"], "r+b") as f:
        f.truncate(os.path.getsize(paths["truncated"]) // 2)
    return paths


@pytest.fixture(scope="module")
def torch_files(tmp_path_factory) -> dict[str, str]:
    return _torch_files(tmp_path_factory.mktemp("weights"))


def _torch_import(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "models.torch_import", *args],
        capture_output=True,
        text=True,
        cwd=cli.ROOT,
        timeout=300,
    )


INIT_FROM_MISTAKES = {
    "pytorch checkpoint": (
        "state_dict",
        ("PyTorch checkpoint", "python -m models.torch_import hardnet39ds"),
    ),
    "garbage": ("garbage", ("neither safetensors nor a PyTorch checkpoint",)),
    "empty": ("empty", ("an empty file",)),
    "truncated safetensors": ("truncated", ("truncated",)),
}


@pytest.mark.parametrize("case", INIT_FROM_MISTAKES)
def test_init_from_that_is_not_canonical_weights_is_one_line(tmp_path, torch_files, case):
    name, needles = INIT_FROM_MISTAKES[case]
    path = torch_files[name]
    workdir = _existing_workdir(tmp_path)
    before = cli.snapshot(workdir)
    for mode in ("train", "eval"):
        proc = cli.run_main_forked(
            *DEMO, "--workdir", workdir, f"--mode={mode}", f"--config.init_from={path}"
        )
        message = cli.assert_one_line_error(proc, path, *needles)
        assert cli.snapshot(workdir) == before
    if name == "state_dict":  # the command it gives works
        out = path.replace(".pth", ".safetensors")
        assert f"{path} {out}" in message
        command = message.split("convert it first: ")[1].split(" (then")[0].split()
        assert command[:3] == ["python", "-m", "models.torch_import"]
        proc = _torch_import(*command[3:])
        assert proc.returncode == 0 and os.path.exists(out), proc.stderr[-2000:]


TORCH_IMPORT_MISTAKES = {
    "pickled whole model": (
        "hardnet39ds",
        "whole",
        ("pickled Python objects", "torch.nn.modules.linear.Linear", "state_dict()"),
    ),
    "malicious pickle": ("hardnet39ds", "malicious", ("pickled Python objects", "refused unread")),
    "garbage": ("hardnet39ds", "garbage", ("neither safetensors nor a PyTorch checkpoint",)),
    "another family's weights": (
        "hrnet_w18_small",
        "state_dict",
        (
            "features.init_block.conv1.conv.weight",
            "ours would be features.init_block.conv1.conv.kernel",
            "fits hardnet39ds",
        ),
    ),
    "another variant's weights": ("hardnet68ds", "state_dict", ("fits hardnet39ds",)),
}


@pytest.mark.parametrize("case", TORCH_IMPORT_MISTAKES)
def test_torch_import_mistake_is_one_line(tmp_path, torch_files, case):
    model, name, needles = TORCH_IMPORT_MISTAKES[case]
    out = tmp_path / "out.safetensors"
    proc = _torch_import(model, torch_files[name], str(out))
    message = cli.assert_one_line_error(proc, torch_files[name], *needles)
    assert "weights_only" not in message
    assert not out.exists()
    assert not os.path.exists(torch_files["marker"])  # the malicious pickle never ran


# --------------------------------------------------------------------------- data
def test_empty_class_folder_is_warned_once_by_name(tmp_path):
    from input_pipeline import folder
    from tests.fake_data import make_folder

    make_folder(tmp_path, {"train": {"a": 2, "b": 0, "c": 1}})
    names = folder.class_names(str(tmp_path), ("train",))
    assert names == ("a", "b", "c")  # still a class: labels keep their indices
    messages = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(folder.logging, "warning", lambda msg, *a: messages.append(msg % a))
        for _ in range(2):
            split = folder.list_split(str(tmp_path), "train", names)
    assert split.labels.tolist() == [0, 0, 2]
    assert len(messages) == 1 and os.path.join(str(tmp_path), "train", "b") in messages[0]


# --------------------------------------------------------------------------- machine faults
def _in_private_tmpfs(size: str, script: str) -> list[str]:
    """argv running `script` (sh) in a private mount namespace where $FULL is a tmpfs of `size`;
    root mounts directly, other users through a user namespace (no cleanup: the mount dies with
    the namespace)."""
    prefix = ["unshare", "--mount"] if os.geteuid() == 0 else ["unshare", "-rm"]
    body = f'FULL=$(mktemp -d) && mount -t tmpfs -o size={size} tmpfs "$FULL" && export FULL && {script}'
    return [*prefix, "sh", "-c", body]


@pytest.mark.slow  # main.py trainings in subprocesses
@pytest.mark.xdist_group("subprocess_training")
def test_disk_full_stops_at_the_first_failed_save(tmp_path):
    """A real full disk (a 30 MB tmpfs holds one 19 MB checkpoint of the demo, not two): the save
    of step 10 fails, the run stops with one line naming it, and step 5 stays loadable. (The
    demo's schedule, stopped after step 10: the resume test's, so its compiled programs too.)"""
    copy = tmp_path / "copy"
    main = " ".join(
        [
            sys.executable,
            os.path.join(cli.ROOT, "main.py"),
            *DEMO,
            *SHORT_RUN,
            "--config.train.stop_after_steps=10",
            '--workdir "$FULL/w"',
        ]
    )
    script = f'{main}; rc=$?; cp -a "$FULL/w" {copy}; exit $rc'
    proc = subprocess.run(
        _in_private_tmpfs("30m", script),
        capture_output=True,
        text=True,
        cwd=cli.ROOT,
        timeout=600,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )
    cli.assert_one_line_error(
        proc, "no space left on device while writing checkpoint 10 to", "/w/checkpoints"
    )
    weights = _committed_weights(copy / "checkpoints")
    assert sorted(weights) == [5]
    assert all(np.isfinite(np.asarray(x)).all() for x in jax.tree.leaves(weights[5]))


def _distributed(workdir, port: int, process_id: int, log, *extra: str) -> subprocess.Popen:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "JAX_NUM_CPU_DEVICES": "1",
        "JAX_CPU_COLLECTIVES_IMPLEMENTATION": "gloo",
    }
    args = [
        sys.executable,
        os.path.join(cli.ROOT, "main.py"),
        *DEMO,
        "--workdir",
        str(workdir),
        "--distributed",
        f"--coordinator_address=localhost:{port}",
        "--num_processes=2",
        f"--process_id={process_id}",
        "--distributed_timeout=10",
        "--config.train.tensorboard=False",
        *extra,
    ]
    return subprocess.Popen(args, cwd=cli.ROOT, env=env, stdout=subprocess.DEVNULL, stderr=log)


@pytest.mark.slow  # main.py trainings in subprocesses
@pytest.mark.parametrize("fault", ["never joins", "dies mid-run"])
def test_lost_process_ends_the_others_within_the_timeout(tmp_path, fault):
    """--distributed_timeout=10: process 0 exits non-zero well within 60 s, whether process 1 never
    starts or is killed once both have joined."""
    import time

    port = 21000 + (os.getpid() + (fault == "dies mid-run")) % 20000
    start = time.monotonic()
    logs = [open(tmp_path / f"p{i}.log", "w") for i in range(2)]
    procs = [_distributed(tmp_path / "w", port, 0, logs[0], "--verbosity=0")]
    try:
        if fault == "dies mid-run":
            procs.append(_distributed(tmp_path / "w", port, 1, logs[1], "--verbosity=0"))
            while "process 1/2" not in (tmp_path / "p1.log").read_text():
                assert procs[1].poll() is None and time.monotonic() - start < 45
                time.sleep(0.2)
            procs[1].kill()
        code = procs[0].wait(timeout=max(60 - (time.monotonic() - start), 1))
    finally:
        for p in procs:
            p.kill()
        for f in logs:
            f.close()
    assert code != 0
    assert time.monotonic() - start < 60
    if fault == "dies mid-run":  # named by the watchdog, not the runtime's abort
        err = (tmp_path / "p0.log").read_text()
        assert code == 2, err[-2000:]
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.startswith("error:")]
        assert lines == [lines[0]] and "process 1 of this run stopped answering" in lines[0], err


def test_non_finite_weights_are_refused_by_eval_and_export_reads():
    """What _latest_weights and init_from reads go through: NaN/inf weights are an error."""
    from train_lib import finite

    good = {"a.kernel": np.ones((2, 2), np.float32), "a.count": np.arange(3)}
    finite.check_weights(good, "checkpoint 5")
    with pytest.raises(
        UserError, match=r"checkpoint 5 holds non-finite weights \(1 of 3 arrays, e.g. b.mean\)"
    ):
        finite.check_weights({**good, "b.mean": np.array([np.nan], np.float32)}, "checkpoint 5")
    assert finite.all_finite({"w": jax.numpy.ones(3)}) and not finite.all_finite(
        {"w": jax.numpy.array([np.inf])}
    )

"""ascend_port.launch: the commands it builds for msrun, HCCL rank tables and mpirun, its argument
errors, and a real 2-worker msrun data-parallel run on CPU (MindSpore 2.10 supports it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from ascend_port.launch import __main__ as launch
from tests import cli
from tests.test_ascend_port import REPO, _image_folder, ascend_python

RUN = [
    "--config",
    "configs/hardnet68.py",
    "--workdir",
    "runs/x",
    "--config.ascend.device_target=Ascend",
]
PYTHON = "/opt/venv-ascend/bin/python"


def _rank_table(path, servers: int = 2, devices: int = 8) -> str:
    table = {
        "version": "1.0",
        "server_count": str(servers),
        "server_list": [
            {
                "server_id": f"10.0.0.{s + 1}",
                "device": [
                    {
                        "device_id": str(d),
                        "device_ip": f"192.98.{d}.{s}",
                        "rank_id": str(s * devices + d),
                    }
                    for d in range(devices)
                ],
                "host_nic_ip": "reserve",
            }
            for s in range(servers)
        ],
        "status": "completed",
    }
    path.write_text(json.dumps(table))
    return str(path)


def test_msrun_eight_devices_one_node():
    (one,), dry = launch.build(["msrun", "--devices", "8", "--dry_run", "--", *RUN], PYTHON)
    assert dry
    assert one.argv[0] == "/opt/venv-ascend/bin/msrun"
    assert "--worker_num=8" in one.argv and "--local_worker_num=8" in one.argv
    assert "--log_dir=runs/x/msrun" in one.argv and "--join=True" in one.argv
    entry = one.argv.index(launch.ENTRY)
    assert one.argv[entry + 1 :] == [*RUN, "--distributed"]
    assert one.env["PATH"].split(os.pathsep)[0] == "/opt/venv-ascend/bin"  # msrun runs `python`
    assert one.env["PYTHONPATH"].split(os.pathsep)[0] == REPO


def test_msrun_two_nodes():
    args = [
        "msrun",
        "--devices",
        "8",
        "--nodes",
        "2",
        "--node_rank",
        "1",
        "--master_addr",
        "10.0.0.1",
    ]
    (one,), _ = launch.build([*args, "--", *RUN, "--distributed"], PYTHON)
    for flag in (
        "--worker_num=16",
        "--local_worker_num=8",
        "--node_rank=1",
        "--master_addr=10.0.0.1",
    ):
        assert flag in one.argv
    assert one.argv.count("--distributed") == 1


def test_rank_table_starts_one_process_per_device_of_this_server(tmp_path):
    table = _rank_table(tmp_path / "hccl_16p.json")
    launches, dry = launch.build(
        ["ranktable", "--rank_table", table, "--server_index", "1", "--", *RUN], PYTHON
    )
    assert not dry and len(launches) == 8
    for d, one in enumerate(launches):
        assert one.argv == [PYTHON, "-m", "ascend_port", *RUN, "--distributed"]
        assert one.env["DEVICE_ID"] == str(d) and one.env["RANK_ID"] == str(8 + d)
        assert one.env["RANK_SIZE"] == "16" and one.env["RANK_TABLE_FILE"] == table
        assert one.log == os.path.join("runs/x", "logs", f"rank_{8 + d}.log")


def test_mpirun_gpu_hosts():
    (one,), _ = launch.build(["mpirun", "--devices", "8", "--hosts", "h1,h2", "--", *RUN], PYTHON)
    assert one.argv[:3] == ["mpirun", "-n", "16"]
    assert one.argv[one.argv.index("--host") + 1] == "h1:8,h2:8"
    assert "PYTHONPATH" in one.argv  # exported to every rank with -x
    assert (
        one.argv[-len(RUN) - 4 :]
        == [PYTHON, "-m", "ascend_port", *RUN, "--distributed"][-len(RUN) - 4 :]
    )


def test_dry_run_prints_the_command_line():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "ascend_port.launch",
            "msrun",
            "--devices",
            "2",
            "--dry_run",
            "--",
            *RUN,
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        "--worker_num=2" in proc.stdout
        and "ascend_port/__main__.py --config configs/hardnet68.py" in proc.stdout
    )


@pytest.mark.parametrize(
    "args, named",
    [
        (["msrun", "--devices", "0", "--", *RUN], "--devices"),
        (["msrun", "--nodes", "2", "--node_rank", "2", "--", *RUN], "--node_rank"),
        (["msrun", "--", "--config", "configs/hardnet68.py"], "--workdir"),
        (["ranktable", "--rank_table", "/nonexistent/hccl.json", "--", *RUN], "not found"),
        (["ranktable", "--rank_table", "{bad}", "--", *RUN], "not an HCCL rank table"),
        (["ranktable", "--rank_table", "{table}", "--server_index", "2", "--", *RUN], "2 servers"),
        (["launch_it"], "invalid choice"),
    ],
)
def test_launcher_mistakes_are_one_error_line(tmp_path, args, named):
    bad = tmp_path / "bad.json"
    bad.write_text('{"server_list": [{"device": [{"device_id": "x"}]}]}')
    table = _rank_table(tmp_path / "hccl.json")
    args = [a.format(bad=bad, table=table) for a in args]
    proc = subprocess.run(
        [sys.executable, "-m", "ascend_port.launch", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
    )
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    assert len(errors) == 1 and named in errors[0], proc.stderr


@pytest.mark.slow
def test_msrun_two_cpu_workers_train_data_parallel(tmp_path):
    """msrun starts a scheduler and 2 CPU workers; they join one group (gradients averaged),
    rank 0 writes metrics and checkpoints. One step: each PyNative step costs both workers
    ~8 CPU-s here."""
    python = ascend_python()
    _image_folder(tmp_path / "data")
    workdir = tmp_path / "run"
    run = cli.ascend_run_args(
        workdir,
        tmp_path / "data",
        "--config.train.batch_size=8",
        "--config.train.steps=1",
        "--config.train.log_every_steps=1",
        "--config.train.eval_every_epochs=100",
    )
    env = dict(os.environ, PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION="upb")
    proc = subprocess.run(
        [
            python,
            "-m",
            "ascend_port.launch",
            "msrun",
            "--devices",
            "2",
            "--master_port",
            "8131",
            "--timeout",
            "300",
            "--",
            *run,
        ],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    logs = {p.name: p.read_text() for p in (workdir / "msrun").glob("*.log")}
    assert proc.returncode == 0, (proc.stderr[-3000:], {k: v[-2000:] for k, v in logs.items()})
    assert "on 2 device(s)" in logs["worker_1.log"]
    rows = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["split"] == "train"] == [1]
    assert [c.name for c in (workdir / "checkpoints").glob("*.ckpt")] == [
        "hardnet39ds-s00000001.ckpt"
    ]

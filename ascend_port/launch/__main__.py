"""Start `python -m ascend_port ... --distributed` on many devices, one process per device.

    # 8 Ascend NPUs (or GPUs) on one node, MindSpore's msrun (no rank table needed):
    python -m ascend_port.launch msrun --devices 8 -- --config configs/X.py --workdir runs/x \\
        --config.data.source=folder:/data/imagenet --config.ascend.device_target=Ascend
    # 2 nodes x 8: the same on each node, with its --node_rank and rank 0's address:
    python -m ascend_port.launch msrun --devices 8 --nodes 2 --node_rank 0 \\
        --master_addr 10.0.0.1 -- ...
    # Ascend 910 with an HCCL rank table (one process per device listed for this server):
    python -m ascend_port.launch ranktable --rank_table hccl_8p.json [--server_index 0] -- ...
    # GPU with OpenMPI (NCCL):
    python -m ascend_port.launch mpirun --devices 8 [--hosts h1,h2] -- ...

Everything after `--` goes to `python -m ascend_port` unchanged (add --mode, overrides, ...);
--distributed is added. --dry_run prints the commands and their environment and starts nothing.
The interpreter is the one running this launcher, and the repository is put on PYTHONPATH (msrun
starts `python <script>` from PATH, so the interpreter's directory goes first on PATH).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shlex
import subprocess
import sys

from ascend_port.errors import ArgumentParser

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ENTRY = os.path.join(REPO, "ascend_port", "__main__.py")


@dataclasses.dataclass
class Launch:
    """One process to start: its argv, the environment it adds, and where its output goes."""

    argv: list[str]
    env: dict[str, str]
    log: str | None = None


class LaunchError(Exception):
    pass


def _base_env(python: str) -> dict[str, str]:
    path = os.environ.get("PYTHONPATH")
    return {
        "PYTHONPATH": REPO + (os.pathsep + path if path else ""),
        "PATH": os.path.dirname(python) + os.pathsep + os.environ.get("PATH", ""),
    }


def _workdir(args: list[str]) -> str:
    for i, arg in enumerate(args):
        if arg == "--workdir" and i + 1 < len(args):
            return args[i + 1]
        if arg.startswith("--workdir="):
            return arg.split("=", 1)[1]
    raise LaunchError("pass the run's flags after --, at least --config and --workdir")


def msrun(opts, args: list[str], python: str) -> list[Launch]:
    """One msrun per node; it starts --devices workers there and a scheduler on node 0."""
    log_dir = opts.log_dir or os.path.join(_workdir(args), "msrun")
    argv = [
        os.path.join(os.path.dirname(python), "msrun"),
        f"--worker_num={opts.devices * opts.nodes}",
        f"--local_worker_num={opts.devices}",
        f"--master_addr={opts.master_addr}",
        f"--master_port={opts.master_port}",
        f"--node_rank={opts.node_rank}",
        f"--log_dir={log_dir}",
        "--join=True",
        f"--cluster_time_out={opts.timeout}",
    ]
    if opts.rank_table:
        argv.append(f"--rank_table_file={os.path.abspath(opts.rank_table)}")
    return [Launch([*argv, ENTRY, *args, "--distributed"], _base_env(python))]


def read_rank_table(path: str) -> list[dict]:
    """The server_list of an HCCL rank table (version 1.0, as hccl_tools.py writes it)."""
    try:
        with open(path) as f:
            table = json.load(f)
        servers = table["server_list"]
        for server in servers:
            for device in server["device"]:
                int(device["device_id"]), int(device["rank_id"])
    except FileNotFoundError:
        raise LaunchError(f"rank table not found: {path}") from None
    except (ValueError, KeyError, TypeError) as e:
        raise LaunchError(f"{path} is not an HCCL rank table (server_list/device): {e}") from None
    if not servers:
        raise LaunchError(f"{path} lists no servers")
    return servers


def ranktable(opts, args: list[str], python: str) -> list[Launch]:
    """One process per device of this server, with DEVICE_ID, RANK_ID, RANK_SIZE and
    RANK_TABLE_FILE as HCCL expects; output to <workdir>/logs/rank_<id>.log."""
    servers = read_rank_table(opts.rank_table)
    if not 0 <= opts.server_index < len(servers):
        raise LaunchError(
            f"--server_index {opts.server_index}: {opts.rank_table} lists {len(servers)} servers"
        )
    size = sum(len(s["device"]) for s in servers)
    log_dir = opts.log_dir or os.path.join(_workdir(args), "logs")
    launches = []
    for device in servers[opts.server_index]["device"]:
        env = dict(
            _base_env(python),
            RANK_TABLE_FILE=os.path.abspath(opts.rank_table),
            RANK_SIZE=str(size),
            RANK_ID=str(device["rank_id"]),
            DEVICE_ID=str(device["device_id"]),
        )
        argv = [python, "-m", "ascend_port", *args, "--distributed"]
        launches.append(Launch(argv, env, os.path.join(log_dir, f"rank_{device['rank_id']}.log")))
    return launches


def mpirun(opts, args: list[str], python: str) -> list[Launch]:
    """One mpirun over all nodes (OpenMPI; MindSpore reads its rank from OMPI_* variables)."""
    hosts = [h for h in (opts.hosts or "").split(",") if h]
    argv = ["mpirun", "-n", str(opts.devices * max(1, len(hosts))), "--bind-to", "none"]
    if hosts:
        argv += ["--host", ",".join(f"{h}:{opts.devices}" for h in hosts)]
    env = _base_env(python)
    for name in env:
        argv += ["-x", name]
    return [Launch([*argv, python, "-m", "ascend_port", *args, "--distributed"], env)]


def build(argv: list[str], python: str = sys.executable) -> tuple[list[Launch], bool]:
    """(the processes a launcher command line starts, --dry_run); argument errors exit 2."""
    parser = ArgumentParser(
        prog="python -m ascend_port.launch",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = parser.add_subparsers(dest="launcher", required=True)
    common = ArgumentParser(add_help=False)
    common.add_argument("--log_dir", help="default: <workdir>/msrun or <workdir>/logs")
    common.add_argument("--dry_run", action="store_true", help="print the commands only")
    p = sub.add_parser("msrun", parents=[common], help="MindSpore's msrun (Ascend, GPU, CPU)")
    p.add_argument("--devices", type=int, default=8, help="workers per node")
    p.add_argument("--nodes", type=int, default=1)
    p.add_argument("--node_rank", type=int, default=0)
    p.add_argument("--master_addr", default="127.0.0.1", help="IP of node 0")
    p.add_argument("--master_port", type=int, default=8118)
    p.add_argument("--timeout", type=int, default=600, help="seconds to wait for all workers")
    p.add_argument("--rank_table", help="optional HCCL rank table (Ascend)")
    p = sub.add_parser("ranktable", parents=[common], help="HCCL rank table (Ascend 910)")
    p.add_argument("--rank_table", required=True, help="hccl_<N>p.json")
    p.add_argument("--server_index", type=int, default=0, help="this host's entry in server_list")
    p = sub.add_parser("mpirun", parents=[common], help="OpenMPI (GPU, NCCL)")
    p.add_argument("--devices", type=int, default=8, help="GPUs per host")
    p.add_argument("--hosts", help="comma-separated host names (default: this host only)")
    if "--" in argv:
        split = argv.index("--")
        ours, args = argv[:split], argv[split + 1 :]
    else:
        ours, args = argv, []
    opts = parser.parse_args(ours)
    for name in ("devices", "nodes"):
        if getattr(opts, name, 1) < 1:
            parser.error(f"--{name} must be >= 1")
    nodes = getattr(opts, "nodes", 1)
    if not 0 <= getattr(opts, "node_rank", 0) < nodes:
        parser.error(f"--node_rank {opts.node_rank} is not in [0, --nodes {nodes})")
    if "--distributed" in args:
        args = [a for a in args if a != "--distributed"]  # added once, below
    try:
        launches = {"msrun": msrun, "ranktable": ranktable, "mpirun": mpirun}[opts.launcher](
            opts, args, python
        )
    except LaunchError as e:
        parser.error(str(e))
    return launches, opts.dry_run


def _describe(launch: Launch) -> str:
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in sorted(launch.env.items()))
    line = f"{env} {shlex.join(launch.argv)}"
    return line + (f" > {shlex.quote(launch.log)} 2>&1" if launch.log else "")


def main(argv: list[str] | None = None) -> int:
    launches, dry_run = build(sys.argv[1:] if argv is None else argv)
    for launch in launches:
        print(_describe(launch), flush=True)
    if dry_run:
        return 0
    procs = []
    for launch in launches:
        env = dict(os.environ, **launch.env)
        if launch.log:
            os.makedirs(os.path.dirname(launch.log), exist_ok=True)
            out = open(launch.log, "w")
            procs.append(subprocess.Popen(launch.argv, env=env, stdout=out, stderr=out))
        else:
            procs.append(subprocess.Popen(launch.argv, env=env))
    codes = [p.wait() for p in procs]
    failed = [i for i, c in enumerate(codes) if c]
    if failed:
        print(
            f"error: {len(failed)} of {len(procs)} processes failed (exit codes "
            f"{sorted(set(codes) - {0})}); see their logs",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

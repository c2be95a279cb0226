"""Train, evaluate or export a model from a config file.

    python main.py --config configs/hardnet68.py --workdir runs/h68            # train + eval
    python main.py --config configs/hardnet68.py --workdir runs/h68 --config.train.batch_size=512
    python main.py --mode=eval --config configs/hardnet68.py --workdir runs/h68 \\
        [--config.init_from=weights.safetensors]
    python main.py --mode=export --config configs/hrnet_w48.py --workdir runs/w48
    python main.py --mode=predict --config configs/demo.py --workdir runs/demo \\
        --images a.jpg,dir/ [--predictions_json out.json]

A run on a workdir that holds checkpoints resumes from the latest committed one. Multi-host:
pass --distributed on every host (jax.distributed.initialize; SLURM and TPU need no more flags).
"""

from __future__ import annotations

import os
import sys
import traceback

# XLA logs C++ INFO/WARNING lines that differ from machine to machine; keep its errors. Set before
# jax is imported; a value the user set wins. (TensorFlow's are set in input_pipeline.tf_runtime.)
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "Checkpoints, metrics, TensorBoard events and exports.")
flags.DEFINE_enum(
    "mode",
    "train",
    ["train", "eval", "export", "predict", "benchmark", "analyze"],
    "train: train and evaluate; eval: evaluate the latest checkpoint or "
    "--config.init_from; export: write <workdir>/export/<model>.safetensors; "
    "predict: top-5 classes of --images; "
    "benchmark: step speed on synthetic data; analyze: params, MACs, CIO, memory.",
)
flags.DEFINE_string("images", None, "--mode=predict: image files and folders, comma-separated.")
flags.DEFINE_string("predictions_json", "", "--mode=predict: also write the predictions here.")
flags.DEFINE_bool("all", False, "--mode=analyze: every registered variant, not only the config's.")
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume checkpoints although the config differs from theirs in a key that "
    "changes the result (model, data, batch size, schedule, optimizer, seed).",
)
flags.DEFINE_bool("distributed", False, "Call jax.distributed.initialize() first (multi-host).")
flags.DEFINE_string("coordinator_address", None, "host:port of process 0 (with --distributed).")
flags.DEFINE_integer("num_processes", None, "Number of processes (with --distributed).")
flags.DEFINE_integer("process_id", None, "This process's index (with --distributed).")
flags.DEFINE_integer(
    "distributed_timeout",
    300,
    "Seconds to wait for every process to join, and after which a process that "
    "stopped answering counts as dead: the others then exit non-zero.",
)
flags.mark_flags_as_required(["config"])
_NO_WORKDIR_MODES = ("benchmark", "analyze")  # --workdir optional: where their JSON lines go


def _fail(message: str, stderr_fd: int | None = None) -> None:
    """One line, exit 2. With `stderr_fd` (a failed checkpoint write muted fd 2, see
    train_lib/checkpoint.py) the line goes there and the process ends at once."""
    if stderr_fd is not None:
        # on a line of its own: the progress bar's closing newline went to the muted fd 2
        os.write(stderr_fd, f"\nerror: {message}\n".encode())
        os._exit(2)
    print(f"error: {message}", file=sys.stderr)
    sys.exit(2)


def _config_path(argv: list[str]) -> str | None:
    for i, arg in enumerate(argv):
        if arg.startswith("--config="):
            return arg.split("=", 1)[1]
        if arg == "--config" and i + 1 < len(argv):
            return argv[i + 1]
    return None


def _config_load_error(e: BaseException, argv: list[str]) -> str | None:
    """The one-line message when the --config file is missing or raised while loading."""
    path = _config_path(argv)
    if path is None:
        return None
    if not os.path.isfile(path):
        return f"--config {path}: no such file (recipes are in configs/, e.g. configs/demo.py)"
    target = os.path.realpath(path)
    frames = [f for f, _ in traceback.walk_tb(e.__traceback__)]
    in_file = any(os.path.realpath(f.f_code.co_filename) == target for f in frames)
    if isinstance(e, SyntaxError) and os.path.realpath(e.filename or "") == target:
        in_file = True
    if in_file or isinstance(e, OSError):
        detail = " ".join(f"{type(e).__name__}: {e}".split())
        return f"--config {path} could not be loaded ({detail}); fix the file or pick a recipe in configs/"
    return None


def _parse_flags(argv: list[str]) -> list[str]:
    """absl parsing, but a bad flag, config file or --config override is one line on stderr."""
    try:
        rest = FLAGS(argv)
        if FLAGS.config is not None:  # a config file that failed to load raises when first read
            FLAGS.config.keys()
        return rest
    except flags.Error as e:
        _fail(_config_load_error(e, argv) or str(e))
    except Exception as e:  # noqa: BLE001  (the config module can raise anything)
        message = _config_load_error(e, argv)
        if message is not None:
            _fail(message)
        if not isinstance(e, (AttributeError, KeyError, TypeError, ValueError)):
            raise
        # ml_collections raises these for unknown keys and locked-config type errors.
        detail = (
            str(e.args[0] if e.args else e)
            .strip("'\"")
            .replace("\\n", " ")
            .replace("\n", " ")
            .replace("\\'", "'")
        )
        overrides = [a for a in argv[1:] if a.startswith("--config.")]
        _fail(f"bad config override ({' '.join(overrides)}): {detail}")


def _run_mode(config) -> dict:
    """Runs --mode; its result, printed as one key=value line."""
    if FLAGS.mode == "train":
        from train_lib import train

        return train.run(config, FLAGS.workdir, allow_config_change=FLAGS.allow_config_change)
    if FLAGS.mode == "eval":
        from train_lib import evaluate

        return evaluate.run(config, FLAGS.workdir)
    if FLAGS.mode == "export":
        from train_lib import export

        return {"exported": export.run(config, FLAGS.workdir)}
    if FLAGS.mode == "predict":
        if not FLAGS.images:
            _fail("--mode=predict needs --images FILE_OR_DIR[,...]")
        from train_lib import predict

        return predict.run(config, FLAGS.workdir, FLAGS.images, FLAGS.predictions_json)
    if FLAGS.mode == "benchmark":
        from train_lib import benchmark

        return benchmark.run(config, FLAGS.workdir)
    from train_lib import analyze

    return analyze.run(config, FLAGS.workdir, all_variants=FLAGS.all)


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        _fail(f"unexpected arguments: {' '.join(argv[1:])}")
    if not FLAGS["verbosity"].present:  # orbax and TF log every file they touch at INFO
        logging.set_verbosity(logging.WARNING)
    if FLAGS.workdir is None and FLAGS.mode not in _NO_WORKDIR_MODES:
        _fail(f"--workdir is required for --mode={FLAGS.mode}")
    import jax

    from train_lib import runtime
    from train_lib.errors import UserError

    distributed = None
    if FLAGS.distributed:
        distributed = {
            k: getattr(FLAGS, k)
            for k in ("coordinator_address", "num_processes", "process_id")
            if getattr(FLAGS, k) is not None
        }
    try:
        runtime.start(
            None if FLAGS.mode in _NO_WORKDIR_MODES else FLAGS.workdir,
            distributed=distributed,
            distributed_timeout=FLAGS.distributed_timeout,
        )
        result = _run_mode(FLAGS.config)
    except (UserError, FileNotFoundError) as e:
        _fail(str(e), getattr(e, "stderr_fd", None))
    if jax.process_index() == 0:
        print(
            " ".join(
                f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in result.items()
            )
        )


if __name__ == "__main__":
    app.run(main, flags_parser=_parse_flags)

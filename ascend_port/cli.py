"""The MindSpore side's command line, in main.py's dialect.

    python -m ascend_port --config configs/X.py --workdir W [--mode=train|eval|export|predict] \
        [--config.data.source=folder:/data/imagenet] [--config.init_from=w.safetensors] \
        [--config.ascend.device_target=CPU] [--distributed]

`python -m ascend_port.train|eval|export` are the same command with that --mode as default.
Every user mistake ends as one `error: ...` line on stderr and exit code 2, before anything is
written to the workdir.
"""

from __future__ import annotations

import sys

from absl import app, flags, logging
from ml_collections import config_flags

MODES = ("train", "eval", "export", "predict")
# Flags of the old per-command CLIs, and what replaced them.
_RENAMED = {
    "data": "--config.data.source=folder:<path> (or digits)",
    "output_dir": "--workdir",
    "ckpt": "--config.init_from=<file> (or the workdir's latest checkpoint)",
    "device_target": "--config.ascend.device_target",
    "sink": "--config.ascend.dataset_sink",
    "format": "--config.ascend.export_format",
    "batch_size": "--config.train.eval_batch_size / --config.ascend.export_batch_size",
    "output_json": "<workdir>/eval_result.json",
}

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file("config", None, "Config file (configs/*.py).", lock_config=True)
flags.DEFINE_string("workdir", None, "checkpoints/, metrics.jsonl, config.json, export/.")
flags.DEFINE_enum(
    "mode",
    None,
    MODES,
    "train: train (resuming from the workdir) and evaluate; eval: evaluate --config.init_from "
    "or the latest checkpoint; export: <workdir>/export/<model>.safetensors and .mindir/.onnx; "
    "predict: top-5 classes of images.",
)
flags.DEFINE_bool("distributed", False, "Data-parallel over the processes msrun/mpirun started.")
flags.DEFINE_string("images", None, "--mode=predict: image files and folders, comma-separated.")
flags.DEFINE_string("predictions_json", "", "--mode=predict: also write the predictions here.")
flags.DEFINE_bool(
    "allow_config_change",
    False,
    "Resume checkpoints trained with a config that differs in a result-changing key.",
)


def fail(message: str) -> None:
    """The one way a user mistake ends: one line on stderr, exit code 2."""
    print(f"error: {' '.join(str(message).split())}", file=sys.stderr)
    sys.exit(2)


def _parse_flags(argv: list[str]) -> list[str]:
    """absl parsing; a bad flag or --config override is one line on stderr, no traceback."""
    try:
        return FLAGS(argv)
    except flags.UnrecognizedFlagError as e:
        hint = _RENAMED.get(e.flagname)
        fail(f"{e}" + (f"; use {hint}" if hint else ""))
    except flags.Error as e:
        fail(str(e))
    except (AttributeError, KeyError, TypeError, ValueError, OSError) as e:
        # ml_collections raises these for unknown keys, locked-config type errors and a config
        # file that does not load.
        detail = str(e.args[0] if e.args else e).replace("\\n", " ").replace("\\'", "'")
        fail(f"bad --config override: {detail.strip(chr(39) + chr(34))}")
    return []  # unreachable: fail() exits


def _dispatch(mode: str) -> dict:
    from ascend_port import checks
    from ascend_port.errors import UserError
    from models.weights_check import WeightsMismatchError

    config, workdir = FLAGS.config, FLAGS.workdir
    try:
        checks.validate(config, mode=mode)
        if mode == "predict" and not FLAGS.images:
            raise UserError("--mode=predict needs --images FILE_OR_DIR[,...]")
        from ascend_port import runtime  # imports mindspore: after the cheap checks

        runtime.setup(config.ascend.device_target, config.ascend.mode)
        if mode == "train":
            from ascend_port import train

            return train.train(
                config,
                workdir,
                distributed=FLAGS.distributed,
                allow_config_change=FLAGS.allow_config_change,
            )
        if mode == "eval":
            from ascend_port import eval as eval_lib

            return eval_lib.evaluate(config, workdir)
        if mode == "export":
            from ascend_port import export

            return {"exported": export.export(config, workdir)}
        from ascend_port import predict

        return predict.run(config, workdir, FLAGS.images, FLAGS.predictions_json)
    except (UserError, FileNotFoundError, WeightsMismatchError) as e:
        fail(str(e))
    return {}  # unreachable


def run(default_mode: str = "train") -> None:
    """Entry point of `python -m ascend_port` and of the per-mode aliases."""
    flags.mark_flags_as_required(["config", "workdir"])

    def main(argv: list[str]) -> None:
        if len(argv) > 1:
            fail(f"unexpected arguments: {' '.join(argv[1:])}")
        try:  # ml_collections reports a config file that does not load only when it is read
            FLAGS.config.get("model")
        except (OSError, SyntaxError, ImportError, AttributeError) as e:
            lines = [line.strip() for line in str(e).splitlines() if line.strip()]
            fail(f"cannot load --config {FLAGS['config'].config_filename}: {lines[-1]}")
        result = _dispatch(FLAGS.mode or default_mode)
        if result:  # as main.py prints it
            print(
                " ".join(
                    f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}"
                    for k, v in result.items()
                )
            )

    logging.use_absl_handler()
    app.run(main, flags_parser=_parse_flags)

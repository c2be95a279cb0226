"""Orbax checkpoints in <workdir>/checkpoints: atomic commits, keep-N, restore onto the current
mesh (so a run saved on N devices resumes on M), and a JSON sidecar naming the model.

Saves are synchronous: a save that fails (disk full) stops the run at that save with one line,
while the last committed checkpoint stays as it was. (Asynchronous saves report a failure only at
the next save, after more training is lost, and orbax logs a traceback from each of its threads.)
Writing a checkpoint takes ~1 s per 100 MB, small next to the steps between two saves.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from ml_collections import ConfigDict

from models import compat
from train_lib.errors import UserError


class Checkpointer:
    def __init__(self, workdir: str, *, keep: int, model_name: str, num_classes: int):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.model_name, self.num_classes = model_name, num_classes
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=True,
            enable_async_checkpointing=False,
            cleanup_tmp_directories=True,  # an interrupted save leaves nothing to trip over
        )
        # Every item's handler named up front: a restore of some items then reads the others'
        # metadata without orbax warning that it "could not restore" them.
        handlers = {name: ocp.StandardCheckpointHandler() for name in ("weights", "train", "ema")}
        self.manager = ocp.CheckpointManager(
            self.directory,
            options=options,
            item_handlers={**handlers, "meta": ocp.JsonCheckpointHandler()},
        )
        _quiet_orbax_tracebacks()
        _ignore_late_write_callbacks()

    @classmethod
    def for_config(cls, config: ConfigDict, workdir: str) -> Checkpointer:
        """The checkpoints of `workdir`, for the config's model (keep-N from train.*)."""
        return cls(
            workdir,
            keep=config.train.keep_checkpoints,
            model_name=config.model.name,
            num_classes=config.model.num_classes,
        )

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def committed_step(self) -> int | None:
        """The latest step whose save has finished committing (waits for pending saves)."""
        self.manager.wait_until_finished()
        self.manager.reload()
        return self.manager.latest_step()

    def save(self, step: int, state: dict[str, Any]) -> None:
        """Weights (params + BN statistics) and the rest of the train state are separate items,
        so evaluation and export restore the weights alone."""
        weights, train = _split(state)
        meta = {"model": self.model_name, "num_classes": self.num_classes, "step": int(step)}
        captured = tempfile.TemporaryFile()
        real_stderr = _redirect_stderr(os.dup(captured.fileno()))
        try:
            items = {k: ocp.args.StandardSave(v) for k, v in _items(weights, train).items()}
            self.manager.save(
                step, args=ocp.args.Composite(**items, meta=ocp.args.JsonSave(meta)), force=True
            )
        except Exception as e:  # noqa: BLE001  (orbax wraps tensorstore's errors in ValueError)
            shutil.rmtree(
                os.path.join(self.directory, f"{step}.orbax-checkpoint-tmp"), ignore_errors=True
            )  # frees the space of the partial write
            # fd 2 stays away from the terminal: the save's other writes keep printing
            # tracebacks from tensorstore's threads; the caller prints one line to real_stderr.
            _redirect_stderr(os.open(os.devnull, os.O_WRONLY))
            error = CheckpointWriteError(step, self.directory, e)
            error.stderr_fd = real_stderr
            raise error from None
        else:  # nothing is lost on success: what was written meanwhile goes to stderr now
            os.dup2(real_stderr, 2)
            os.close(real_stderr)
            captured.seek(0)
            if text := captured.read():
                os.write(2, text)
        finally:
            captured.close()

    def check_model(self, step: int) -> None:
        """Refuses a workdir that holds another model's checkpoints (nothing is overwritten)."""
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))[
            "meta"
        ]
        if (meta["model"], meta["num_classes"]) != (self.model_name, self.num_classes):
            raise UserError(
                f"{self.directory} holds checkpoints of {meta['model']} with {meta['num_classes']} "
                f"classes, not {self.model_name} with {self.num_classes}; use another --workdir"
            )

    def restore(self, step: int, target: dict[str, Any]) -> dict[str, Any]:
        """Restores the train state onto `target`'s shapes, dtypes and shardings (the current
        mesh, whatever the mesh it was saved from). A checkpoint without EMA weights (saved before
        train.ema_decay was switched on) restores without "ema"; the caller starts the average."""
        self.check_model(step)
        items = _items(*_split(_abstract(target)))
        if "ema" not in self.manager.item_metadata(step):
            items.pop("ema", None)
        saved = self._saved_train_entries(step)
        wanted = items["train"]
        unused = set(saved) - set(wanted)
        items["train"] = {k: v for k, v in wanted.items() if k in saved}
        replicated = wanted["step"].sharding
        for name in unused:  # read (orbax restores whole trees) and dropped below
            items["train"][name] = jax.tree.map(
                lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=replicated), saved[name]
            )
        restored = self.manager.restore(
            step,
            args=ocp.args.Composite(**{k: ocp.args.StandardRestore(v) for k, v in items.items()}),
        )
        train = {k: v for k, v in restored["train"].items() if k not in unused}
        return {
            **restored["weights"],
            **train,
            **({"ema": restored["ema"]} if "ema" in items else {}),
        }

    def _saved_train_entries(self, step: int) -> dict[str, Any]:
        """The train item's top-level entries as saved (array metadata trees): the loss scale is
        there only when that run computed in float16, whatever the resuming config says."""
        path = epath.Path(self.directory) / str(step) / "train"
        return dict(ocp.StandardCheckpointHandler().metadata(path).tree)

    def restore_weights(
        self, step: int, target: dict[str, Any], *, ema: bool = False
    ) -> dict[str, Any]:
        """Restores {'params', 'batch_stats'} only (evaluation, export); their moving average
        (train.ema_decay) instead if `ema`."""
        self.check_model(step)
        item = "ema" if ema else "weights"
        if item not in self.manager.item_metadata(step):
            raise UserError(
                f"the checkpoint of step {step} in {self.directory} holds no EMA "
                "weights (train.ema_decay was 0); unset export_ema"
            )
        restored = self.manager.restore(
            step, args=ocp.args.Composite(**{item: ocp.args.StandardRestore(_abstract(target))})
        )
        return restored[item]

    def close(self) -> None:
        """Waits for async saves to commit; errors are raised, never swallowed."""
        compat.await_orbax_tmp_cleanup(self.manager)  # else an exit without a save can warn
        self.manager.wait_until_finished()
        self.manager.close()


class CheckpointWriteError(UserError):
    """A save failed (disk full, permissions): one line naming the step and the directory."""

    def __init__(self, step: int, directory: str, cause: BaseException):
        text = str(cause)
        if "No space left on device" in text or "os_error_code='28'" in text:
            message = f"no space left on device while writing checkpoint {step} to {directory}"
        else:
            message = (
                f"could not write checkpoint {step} to {directory} "
                f"({type(cause).__name__}: {' '.join(text.split())[:300]})"
            )
        super().__init__(message)


def _redirect_stderr(fd: int) -> int:
    """Points fd 2 at `fd` (closed here) and returns a duplicate of what fd 2 was. A failed save
    makes tensorstore's other writes of it print tracebacks from their own threads, through the
    C API (past sys.excepthook and logging), while the save is still failing; so each save runs
    with fd 2 captured."""
    sys.stderr.flush()
    saved = os.dup(2)
    os.dup2(fd, 2)
    os.close(fd)
    return saved


class _DropOrbaxTracebacks(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        from_orbax = f"{os.sep}orbax{os.sep}" in record.pathname or (
            record.name == "asyncio" and f"{os.sep}orbax{os.sep}" in record.getMessage()
        )
        return not (from_orbax and record.levelno >= logging.ERROR)


def _quiet_orbax_tracebacks() -> None:
    """Orbax logs a failed save from every thread it used, with tracebacks; the failure is raised
    to our caller as one CheckpointWriteError, so those records are dropped."""
    for name in ("absl", "asyncio"):  # asyncio: "Task exception was never retrieved" of its writes
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropOrbaxTracebacks) for f in logger.filters):
            logger.addFilter(_DropOrbaxTracebacks())


def _ignore_late_write_callbacks() -> None:
    """When one write of a save fails, tensorstore's other writes of it still finish and call back
    into the asyncio loop orbax has already closed; tensorstore prints each callback's
    RuntimeError through sys.excepthook, a traceback around our one line. Those, and only those,
    are dropped."""
    previous = sys.excepthook
    if getattr(previous, "drops_closed_loop_callbacks", False):
        return

    def hook(kind, value, tb):
        if not (kind is RuntimeError and str(value) == "Event loop is closed"):
            previous(kind, value, tb)

    hook.drops_closed_loop_callbacks = True
    sys.excepthook = hook


_WEIGHT_ITEMS = ("params", "batch_stats")


def _split(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    weights = {k: v for k, v in state.items() if k in _WEIGHT_ITEMS}
    return weights, {k: v for k, v in state.items() if k not in _WEIGHT_ITEMS}


def _items(weights: dict[str, Any], train: dict[str, Any]) -> dict[str, Any]:
    """Checkpoint items: weights, the rest of the train state, and the EMA weights (if on) as
    their own item, so that export can restore them alone."""
    train = dict(train)
    ema = train.pop("ema", None)
    return {"weights": weights, "train": train, **({"ema": ema} if ema is not None else {})}


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)

"""Orbax checkpoints in <workdir>/checkpoints: atomic commits, keep-N, restore onto the current
mesh (so a run saved on N devices resumes on M), and a JSON sidecar naming the model."""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from train_lib.errors import UserError


class Checkpointer:
    def __init__(self, workdir: str, *, keep: int, model_name: str, num_classes: int):
        self.directory = os.path.join(os.path.abspath(workdir), "checkpoints")
        self.model_name, self.num_classes = model_name, num_classes
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, create=True, enable_async_checkpointing=True,
            cleanup_tmp_directories=True,  # an interrupted save leaves nothing to trip over
        )
        self.manager = ocp.CheckpointManager(self.directory, options=options)

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
        self.manager.save(step, args=ocp.args.Composite(
            weights=ocp.args.StandardSave(weights), train=ocp.args.StandardSave(train),
            meta=ocp.args.JsonSave(meta)), force=True)

    def check_model(self, step: int) -> None:
        """Refuses a workdir that holds another model's checkpoints (nothing is overwritten)."""
        meta = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))["meta"]
        if (meta["model"], meta["num_classes"]) != (self.model_name, self.num_classes):
            raise UserError(
                f"{self.directory} holds checkpoints of {meta['model']} with {meta['num_classes']} "
                f"classes, not {self.model_name} with {self.num_classes}; use another --workdir"
            )

    def restore(self, step: int, target: dict[str, Any]) -> dict[str, Any]:
        """Restores the train state onto `target`'s shapes, dtypes and shardings (the current
        mesh, whatever the mesh it was saved from)."""
        self.check_model(step)
        weights, train = _split(_abstract(target))
        restored = self.manager.restore(step, args=ocp.args.Composite(
            weights=ocp.args.StandardRestore(weights), train=ocp.args.StandardRestore(train)))
        return {**restored["weights"], **restored["train"]}

    def restore_weights(self, step: int, target: dict[str, Any]) -> dict[str, Any]:
        """Restores {'params', 'batch_stats'} only (evaluation, export)."""
        self.check_model(step)
        restored = self.manager.restore(step, args=ocp.args.Composite(
            weights=ocp.args.StandardRestore(_abstract(target))))
        return restored["weights"]

    def close(self) -> None:
        """Waits for async saves to commit; errors are raised, never swallowed."""
        # orbax 0.12.8 starts the temp-dir cleanup in a thread when the manager opens, and only
        # save() waits for it (close() does not): a process that exits without saving (eval,
        # export, a refused workdir) while it runs prints "cannot schedule new futures after
        # shutdown". No public call waits for it; releases without the method skip this.
        await_cleanup = getattr(self.manager, "_maybe_await_cleanup_tmp_directory", None)
        if await_cleanup is not None:
            await_cleanup()
        self.manager.wait_until_finished()
        self.manager.close()


_WEIGHT_ITEMS = ("params", "batch_stats")


def _split(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    weights = {k: v for k, v in state.items() if k in _WEIGHT_ITEMS}
    return weights, {k: v for k, v in state.items() if k not in _WEIGHT_ITEMS}


def _abstract(tree: Any) -> Any:
    return jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), tree)

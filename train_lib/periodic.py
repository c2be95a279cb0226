"""When a periodic action (log, eval, checkpoint) runs: one rule for every action, on both sides.

Each action has a period in steps or in epochs, `train.<action>_every_steps` (int) or
`train.<action>_every_epochs` (float, fractions allowed), and exactly one of the two is set
(> 0; 0 or None leaves a form unset). Epochs become steps with the run's steps per epoch
(rounded down, at least one step). `itstime` then answers "is it time at this step", as
big_vision's `u.itstime`, with the last step of the run always a yes where the loop promises
"also at the end".

Framework-free (ml_collections only): the MindSpore side imports the same rule.
"""

from __future__ import annotations

from ml_collections import ConfigDict

from train_lib.errors import UserError

ACTIONS = ("log", "eval", "checkpoint")


def _keys(action: str) -> tuple[str, str]:
    return f"{action}_every_steps", f"{action}_every_epochs"


def check(train: ConfigDict) -> None:
    """Refuses a negative period, and an action with both forms or neither set."""
    for action in ACTIONS:
        steps_key, epochs_key = _keys(action)
        steps, epochs = train.get(steps_key) or 0, train.get(epochs_key) or 0
        for key, value in ((steps_key, steps), (epochs_key, epochs)):
            if value < 0:
                raise UserError(f"train.{key}={value} must be positive (0 = unset)")
        if steps and epochs:
            raise UserError(
                f"train.{steps_key}={steps} and train.{epochs_key}={epochs} are both set; "
                f"set the other one to 0"
            )
        if not steps and not epochs:
            raise UserError(f"set train.{steps_key} or train.{epochs_key} (> 0)")


def every_n_steps(train: ConfigDict, action: str, steps_per_epoch: int) -> int:
    """The period of `action` in steps (the config is checked: exactly one form is set)."""
    steps_key, epochs_key = _keys(action)
    if steps := train.get(steps_key):
        return int(steps)
    return max(int(train[epochs_key] * steps_per_epoch), 1)


def itstime(
    step: int, every_n_steps: int, total_steps: int, *, last: bool = True, first: bool = False
) -> bool:
    """Whether the action runs at `step` (1-based): at every multiple of `every_n_steps`, at
    `total_steps` if `last`, and at step 1 if `first`."""
    return step % every_n_steps == 0 or (last and step == total_steps) or (first and step == 1)

"""train_lib.periodic: when log, eval and checkpoint run, from a period in steps or in epochs."""

from __future__ import annotations

import pytest

from configs import base
from train_lib import config_checks, periodic
from train_lib.errors import UserError


def _times(every: int, total: int, **kwargs) -> list[int]:
    return [s for s in range(1, total + 1) if periodic.itstime(s, every, total, **kwargs)]


def test_multiples_and_the_last_step():
    assert _times(3, 10) == [3, 6, 9, 10]  # "also at the end"
    assert _times(5, 10) == [5, 10]  # the last step once, not twice
    assert _times(3, 10, last=False) == [3, 6, 9]
    assert _times(4, 10, first=True) == [1, 4, 8, 10]
    assert _times(100, 7) == [7]  # a period past the end: the end only
    assert _times(1, 4) == [1, 2, 3, 4]


def test_epochs_become_steps_rounded_down_at_least_one():
    train = base.get_config().train
    train.update(eval_every_epochs=0.5)
    assert periodic.every_n_steps(train, "eval", steps_per_epoch=7) == 3
    train.update(eval_every_epochs=2.0)
    assert periodic.every_n_steps(train, "eval", steps_per_epoch=7) == 14
    train.update(eval_every_epochs=0.01)
    assert periodic.every_n_steps(train, "eval", steps_per_epoch=7) == 1
    train.update(log_every_steps=0, log_every_epochs=1.5)
    assert periodic.every_n_steps(train, "log", steps_per_epoch=10) == 15
    train.update(eval_every_epochs=0.0, eval_every_steps=4)  # steps ignore steps_per_epoch
    assert periodic.every_n_steps(train, "eval", steps_per_epoch=1000) == 4
    assert periodic.every_n_steps(train, "checkpoint", steps_per_epoch=10) == 1000  # default


def test_the_shipped_defaults_set_one_form_per_action():
    train = base.get_config().train
    periodic.check(train)
    for action in periodic.ACTIONS:
        steps, epochs = train[f"{action}_every_steps"], train[f"{action}_every_epochs"]
        assert bool(steps) != bool(epochs), action


@pytest.mark.parametrize(
    "overrides, needles",
    [
        ({"log_every_epochs": 1.0}, ("train.log_every_steps=50", "train.log_every_epochs=1.0")),
        ({"eval_every_steps": 10}, ("train.eval_every_steps=10", "train.eval_every_epochs=1.0")),
        ({"checkpoint_every_steps": 0}, ("train.checkpoint_every_steps or",)),
        ({"log_every_steps": -5}, ("train.log_every_steps=-5",)),
        ({"eval_every_epochs": -1.0}, ("train.eval_every_epochs=-1.0",)),
    ],
)
def test_both_forms_neither_or_a_negative_period_is_refused(overrides, needles):
    config = base.get_config()
    config.model.num_classes = 10
    config.data.source = "digits"
    config.train.update(overrides)
    for check in (periodic.check, lambda _: config_checks.check(config, device_count=1)):
        with pytest.raises(UserError) as e:
            check(config.train)
        for needle in needles:
            assert needle in str(e.value)

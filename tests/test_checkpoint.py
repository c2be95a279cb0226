"""train_lib.checkpoint + train._resume: a workdir resumes across a model.dtype switch to or from
float16 (with --allow_config_change), whose train state has a loss scale only in float16."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from train_lib import checkpoint, loss_scale, train
from train_lib.state import TrainState


def _state(with_loss_scale: bool, value: float = 1.0) -> TrainState:
    scale = loss_scale.init(256.0) if with_loss_scale else None
    return TrainState(
        step=jnp.asarray(3, jnp.int32),
        params={"conv": {"kernel": jnp.full((2, 3), value)}},
        batch_stats={"bn": {"mean": jnp.full((3,), value)}},
        opt_state={"momentum": jnp.full((2, 3), -value)},
        rng=jnp.asarray([7, 9], jnp.uint32),
        loss_scale=scale,
    )


@pytest.mark.parametrize("saved_fp16", [True, False], ids=["from float16", "to float16"])
def test_resume_across_a_float16_switch(tmp_path, caplog, saved_fp16):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, model_name="m", num_classes=3)
    ckpt.save(3, _state(saved_fp16, value=2.0).as_dict())
    ckpt.close()
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, model_name="m", num_classes=3)
    replicated = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    with caplog.at_level(logging.WARNING):
        restored = train._resume(ckpt, 3, _state(not saved_fp16), replicated)
    ckpt.close()
    assert int(restored.step) == 3
    np.testing.assert_array_equal(restored.params["conv"]["kernel"], np.full((2, 3), 2.0))
    np.testing.assert_array_equal(restored.batch_stats["bn"]["mean"], np.full((3,), 2.0))
    np.testing.assert_array_equal(restored.opt_state["momentum"], np.full((2, 3), -2.0))
    np.testing.assert_array_equal(restored.rng, [7, 9])
    notes = [r.getMessage() for r in caplog.records if "loss scale" in r.getMessage()]
    if saved_fp16:  # resumed in float32: the saved scale is not carried along
        assert restored.loss_scale is None and notes == []
    else:  # resumed in float16: a fresh scale, said once
        assert float(restored.loss_scale["scale"]) == loss_scale.INITIAL_SCALE
        assert int(restored.loss_scale["good_steps"]) == 0
        assert notes == [
            "the checkpoint of step 3 was not computed in float16; the loss scale starts at 32768"
        ]


def test_resume_in_float16_keeps_the_saved_scale(tmp_path):
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, model_name="m", num_classes=3)
    ckpt.save(3, _state(True, value=2.0).as_dict())
    ckpt.close()
    ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2, model_name="m", num_classes=3)
    replicated = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    restored = train._resume(ckpt, 3, _state(True), replicated)
    ckpt.close()
    assert float(restored.loss_scale["scale"]) == 256.0

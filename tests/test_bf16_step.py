"""With model.dtype=bfloat16 the train step's matrix work is bfloat16: every convolution and
every matrix product takes and gives bfloat16, except BatchNorm's per-channel statistics
(float32 ones-vector products on CPU, models.layers._channel_sums). A float32 convolution or
matmul would leave a GPU's bf16 tensor cores idle and cap MFU; nothing else would notice it.
Checked on the lowered program (no compile) of one model per family."""

from __future__ import annotations

import re

import numpy as np
import optax
import pytest

from configs import base
from train_lib import build, optim
from train_lib import mesh as mesh_lib
from train_lib.state import SplitModel


def _signatures(program: str, op: str) -> list[list[tuple[str, str]]]:
    """(shape, element type) of each operand and the result of every `op` in StableHLO text."""
    found = []
    for line in program.splitlines():
        if f"{op}(" in line or f"{op} " in line:
            types = line.rsplit(" : ", 1)[-1]
            found.append(re.findall(r"tensor<((?:\d+x)*)(\w+)>", types))
    return found


@pytest.mark.parametrize("name", ["hardnet39ds", "hrnet_w18_small", "hlg_mobile"])
def test_bf16_train_step_does_its_matrix_work_in_bf16(name):
    config = base.get_config()
    config.model.name, config.model.dtype, config.model.num_classes = name, "bfloat16", 10
    size = 224 if name.startswith("hlg") else 64  # HLG takes 224 px only
    config.train.batch_size, config.data.image_size = 2, size
    split = SplitModel(build.model(config))
    mesh = mesh_lib.make_mesh()
    tx = optim.create_optimizer(config, optax.constant_schedule(0.1))
    state = build.initial_state(config, tx, split.initial_params, split.initial_stats)
    host = {"image": np.zeros((2, size, size, 3), np.uint8), "label": np.zeros((2,), np.int32)}
    batch = mesh_lib.to_global(host, mesh_lib.data_sharding(mesh))
    program = build.train_step(config, split, tx, mesh).lower(state, batch).as_text()

    convolutions = _signatures(program, "stablehlo.convolution")
    assert len(convolutions) > 20
    assert all([t for _, t in sig] == ["bf16"] * 3 for sig in convolutions), convolutions[:3]
    products = _signatures(program, "stablehlo.dot_general")
    bf16 = [sig for sig in products if [t for _, t in sig] == ["bf16"] * 3]
    assert bf16  # the classifier at least
    for sig in products:
        if sig not in bf16:  # BatchNorm's sums: float32 ones-vector (rank 1) times a matrix
            (lhs_shape, lhs_type), _, (_, out_type) = sig
            assert lhs_type == out_type == "f32" and lhs_shape.count("x") == 1, sig

"""The train step cell: MindSpore's TrainOneStep(WithLossScale)Cell plus the recipe fields.

- train.accum_steps = k: the (per-device) batch is split into k micro-batches, micro-batch i =
  rows i, i+k, ... as on the JAX side (train_lib.steps); each runs forward (BatchNorm statistics
  updated per micro-batch, as the JAX side threads them through its scan) and backward, and the
  mean of their gradients makes one optimizer update. The schedule counts optimizer steps.
- train.grad_clip_norm: train_lib.recipes.clipping's rule, every gradient scaled by
  max_norm / max(global_norm, max_norm), on the unscaled (and all-reduced) gradients, before the
  optimizer (so before SGD's coupled weight decay, as the JAX side's optax chain).
- train.ema_decay: after every optimizer update the average of every weight (params and
  BatchNorm statistics) moves towards it with train_lib.recipes.ema's decay of that step. The
  average lives in `ema.<name>` parameters of this cell, so checkpoints hold it; a step a dynamic
  loss scale skips moves neither weights nor average.

Written as cells of our own because MindSpore's Model builds only the plain cells; the
mixed-precision conversion and loss-scale handling stay MindSpore's (amp.build_train_network
builds the network, our cell takes its place).
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, ParameterTuple, Tensor, nn, ops

from train_lib.recipes import clipping as clip_rule

_square_sum = ops.MultitypeFuncGraph("square_sum")


@_square_sum.register("Tensor")
def _square_sum_tensor(grad):
    return ops.reduce_sum(ops.square(grad.astype(ms.float32)))


_times = ops.MultitypeFuncGraph("times")


@_times.register("Tensor", "Tensor")
def _times_tensor(factor, grad):
    return grad * factor.astype(grad.dtype)


_plus = ops.MultitypeFuncGraph("plus")


@_plus.register("Tensor", "Tensor")
def _plus_tensor(a, b):
    return a + b


_unscale = ops.MultitypeFuncGraph("unscale")


@_unscale.register("Tensor", "Tensor")
def _unscale_tensor(scale, grad):
    return grad * ops.cast(ops.reciprocal(scale), ops.dtype(grad))


_ema_step = ops.MultitypeFuncGraph("ema_step")


@_ema_step.register("Tensor", "Tensor", "Tensor")
def _ema_step_tensor(decay, average, weight):
    return ops.assign(average, average + (1.0 - decay) * (weight.astype(average.dtype) - average))


class _Recipe:
    """Accumulation, clipping and EMA shared by both step cells (called from their construct;
    MindSpore's graph mode cannot follow super() through a mixin, so these are plain methods)."""

    def _init_recipe(
        self,
        net: nn.Cell,
        *,
        accum_steps: int,
        clip_norm: float | None,
        clip_scale: float,
        ema_decays: np.ndarray | None,
    ) -> None:
        self.accum_steps = int(accum_steps)
        self.clip = clip_norm is not None
        # Gradients reach the clip multiplied by clip_scale (a fixed loss scale the optimizer
        # divides out itself): clipping those at max_norm * scale clips the unscaled ones.
        self.clip_norm = Tensor((clip_norm or 1.0) * clip_scale, ms.float32)
        self.ema = ema_decays is not None
        if self.ema:
            targets = [p for p in net.get_parameters() if p.dtype in (ms.float32, ms.float16)]
            self.ema_targets = ParameterTuple(targets)
            self.ema_weights = ParameterTuple(
                Parameter(
                    Tensor(p.asnumpy().astype(np.float32)),
                    name=f"ema.{p.name}",
                    requires_grad=False,
                )
                for p in targets
            )
            self.ema_decays = Tensor(ema_decays, ms.float32)

    def _loss_and_grads(self, sens, inputs):
        """Mean loss and mean gradient (times `sens`) over the micro-batches of `inputs`."""
        if self.accum_steps == 1:
            loss = self.network(*inputs)
            fill = ops.fill(loss.dtype, loss.shape, 1.0) * ops.cast(sens, loss.dtype)
            return loss, self.grad(self.network, self.weights)(*inputs, fill)
        k = self.accum_steps
        loss_sum, grad_sum = None, None
        for i in range(k):
            micro = tuple([x[i::k] for x in inputs])
            loss = self.network(*micro)
            fill = ops.fill(loss.dtype, loss.shape, 1.0) * ops.cast(sens, loss.dtype)
            grads = self.grad(self.network, self.weights)(*micro, fill)
            if i == 0:
                loss_sum, grad_sum = loss, grads
            else:
                loss_sum = loss_sum + loss
                grad_sum = self.hyper_map(_plus, grad_sum, grads)
        inverse = Tensor(1.0 / k, ms.float32)
        return loss_sum / k, self.hyper_map(ops.partial(_times, inverse), grad_sum)

    def _update(self, grads):
        """Clip, optimizer update, then the EMA step; returns the last effect to depend on."""
        if self.clip:
            norm = ops.sqrt(ops.addn(self.hyper_map(_square_sum, grads)))
            factor = clip_rule.factor(norm, self.clip_norm, ops)
            grads = self.hyper_map(ops.partial(_times, factor), grads)
        done = self.optimizer(grads)
        if self.ema:
            step = ops.depend(self.optimizer.global_step, done)  # 1 after the first update
            index = ops.minimum(step - 1, self.ema_decays.shape[0] - 1)
            decay = ops.gather(self.ema_decays, index, 0)
            done = ops.depend(
                done,
                self.hyper_map(ops.partial(_ema_step, decay), self.ema_weights, self.ema_targets),
            )
        return done


class TrainStep(_Recipe, nn.TrainOneStepCell):
    """nn.TrainOneStepCell (no loss scale, or a fixed one whose overflowing updates are applied)
    with the recipe fields."""

    def __init__(self, network, optimizer, sens=None, *, net, **recipe):
        super().__init__(network, optimizer, sens)
        self._init_recipe(net, clip_scale=float(self.sens), **recipe)
        self.hyper_map = ops.HyperMap()
        self.sens_tensor = Tensor(self.sens, ms.float32)

    def construct(self, *inputs):
        loss, grads = self._loss_and_grads(self.sens_tensor, inputs)
        grads = self.grad_reducer(grads)
        return ops.depend(loss, self._update(grads))


class LossScaleTrainStep(_Recipe, nn.TrainOneStepWithLossScaleCell):
    """nn.TrainOneStepWithLossScaleCell (dynamic loss scale: an overflowing step is skipped and
    the scale lowered) with the recipe fields."""

    def __init__(self, network, optimizer, scale_sense, *, net, **recipe):
        super().__init__(network, optimizer, scale_sense)
        self._init_recipe(net, clip_scale=1.0, **recipe)

    def construct(self, *inputs):
        scaling_sens = self.scale_sense
        status = Tensor([0] * 8, ms.int32)
        loss, grads = self._loss_and_grads(scaling_sens, inputs)
        grads = self.hyper_map(ops.partial(_unscale, scaling_sens), grads)
        grads = self.grad_reducer(grads)
        cond = self.get_overflow_status(status, grads)
        overflow = self.process_loss_scale(cond)
        if not overflow:
            loss = ops.depend(loss, self._update(grads))
        return loss, cond, scaling_sens


def build(
    net: nn.Cell,
    loss_fn: nn.Cell,
    optimizer: nn.Optimizer,
    *,
    amp_level: str = "O0",
    loss_scale_manager=None,
    accum_steps: int = 1,
    clip_norm: float | None = None,
    ema_decays: np.ndarray | None = None,
) -> nn.Cell:
    """The train network for mindspore.train.Model(network): MindSpore's own for `amp_level`
    and `loss_scale_manager`, with our step cell in place of its TrainOneStep cell.
    `ema_decays`: d_t for t = 1, 2, ... (train_lib.recipes.ema.decays); None = no EMA."""
    kwargs = {} if loss_scale_manager is None else {"loss_scale_manager": loss_scale_manager}
    built = ms.amp.build_train_network(net, optimizer, loss_fn, level=amp_level, **kwargs)
    recipe = {
        "net": net,
        "accum_steps": accum_steps,
        "clip_norm": clip_norm,
        "ema_decays": ema_decays,
    }
    if isinstance(built, nn.TrainOneStepWithLossScaleCell):
        scale = built.loss_scaling_manager
        if scale is None:
            scale = Tensor(built.scale_sense.asnumpy())
        return LossScaleTrainStep(built.network, optimizer, scale, **recipe).set_train()
    sens = built.sens if built.sense_flag else None
    return TrainStep(built.network, optimizer, sens, **recipe).set_train()


def ema_weights(train_network: nn.Cell) -> dict[str, np.ndarray]:
    """{parameter name: EMA value} of a step cell with train.ema_decay on ({} without)."""
    if not getattr(train_network, "ema", False):
        return {}
    return {p.name[len("ema.") :]: p.asnumpy() for p in train_network.ema_weights}

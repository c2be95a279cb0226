"""Optimizers from the config's optim fields, with the JAX side's semantics.

sgd: coupled L2 decay, then momentum: nn.Momentum without Nesterov, our NesterovMomentum with it
(MindSpore 2.10's ApplyMomentum ignores use_nesterov on CPU; measured, the update equals plain
momentum). rmsprop: nn.RMSProp, eps inside the sqrt as in TF; MindSpore starts the mean square at
1 like TF1. adamw: our AdamW below (bias-corrected, decoupled decay lr * wd * w, as optax.adamw),
because nn.AdamWeightDecay has no bias correction. decay_norm_and_bias=False exempts norm
gamma/beta and all biases from decay. Parameters are always grouped: MindSpore's ungrouped
default silently exempts every name containing gamma/beta. All three are checked against optax
in tests/test_ascend_port.py.
"""

from __future__ import annotations

import mindspore as ms
import numpy as np
from mindspore import Parameter, Tensor, nn, ops
from ml_collections import ConfigDict

from ascend_port import registry
from train_lib.recipes import weight_decay as decay_rule


def decays(
    params: list[Parameter], decay_norm_and_bias: bool, family: str | None = None
) -> list[bool]:
    """Whether each parameter gets weight decay (recipes.weight_decay, the JAX side's rule)."""
    return [
        decay_rule.decayed(
            p.name, len(p.shape), family=family, decay_norm_and_bias=decay_norm_and_bias
        )
        for p in params
    ]


def param_groups(
    params: list[Parameter],
    weight_decay: float,
    decay_norm_and_bias: bool,
    lr_of: dict[str, np.ndarray] | None = None,
    lr: np.ndarray | None = None,
    family: str | None = None,
) -> list:
    """MindSpore parameter groups: by weight decay, and, with `lr_of` (per-step learning rates
    of the parameters whose lr differs from `lr`), by learning rate."""
    flags = decays(params, decay_norm_and_bias, family)
    groups = []
    for decayed in (True, False):
        members = [p for p, f in zip(params, flags, strict=True) if f == decayed]
        by_lr: dict[int, tuple[np.ndarray | None, list[Parameter]]] = {}
        for p in members:
            own = (lr_of or {}).get(p.name, lr if lr_of else None)
            by_lr.setdefault(id(own), (own, []))[1].append(p)
        for own, group in by_lr.values():
            entry = {"params": group, "weight_decay": weight_decay if decayed else 0.0}
            if own is not None:
                entry["lr"] = Tensor(own, ms.float32)
            groups.append(entry)
    return groups + [{"order_params": params}]


_adamw_update = ops.MultitypeFuncGraph("adamw_update")


@_adamw_update.register(*["Tensor"] * 11)
def _update(beta1, beta2, eps, lr, bc1, bc2, decay, param, m, v, grad):
    grad = grad.astype(ms.float32)
    next_m = beta1 * m + (1.0 - beta1) * grad
    next_v = beta2 * v + (1.0 - beta2) * grad * grad
    update = (next_m / bc1) / (ops.sqrt(next_v / bc2) + eps) + decay * param
    next_param = param - lr * update
    next_param = ops.depend(next_param, ops.assign(param, next_param))
    next_param = ops.depend(next_param, ops.assign(m, next_m))
    return ops.depend(next_param, ops.assign(v, next_v))


_adamw_group = ops.MultitypeFuncGraph("adamw_group_lr")


@_adamw_group.register("Function", *["Tensor"] * 8)
def _adamw_group_lr(update, bc1, bc2, lr, decay, param, m, v, grad):
    return update(lr, bc1, bc2, decay, param, m, v, grad)


_nesterov_update = ops.MultitypeFuncGraph("nesterov_update")


@_nesterov_update.register("Tensor", "Tensor", "Tensor", "Tensor", "Tensor")
def _nesterov(momentum, lr, param, accum, grad):
    next_accum = momentum * accum + grad.astype(ms.float32)
    next_param = param - lr * (grad + momentum * next_accum)
    next_param = ops.depend(next_param, ops.assign(param, next_param))
    return ops.depend(next_param, ops.assign(accum, next_accum))


class NesterovMomentum(nn.Optimizer):
    """SGD with Nesterov momentum as PyTorch/optax: a = m * a + g; w -= lr * (g + m * a).

    Weight decay (per group, coupled) and loss-scale handling are nn.Momentum's.
    """

    def __init__(self, params, learning_rate, momentum, *, weight_decay=0.0, loss_scale=1.0):
        super().__init__(learning_rate, params, weight_decay, loss_scale)
        self.momentum = Tensor(momentum, ms.float32)
        self.moments = self._parameters.clone(prefix="moments", init="zeros")

    def construct(self, gradients):
        gradients = self.decay_weight(gradients)
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        if self.is_group_lr:  # one lr per parameter
            update = ops.partial(_nesterov_update, self.momentum)
            return self.hyper_map(update, lr, self._parameters, self.moments, gradients)
        update = ops.partial(_nesterov_update, self.momentum, lr)
        return self.hyper_map(update, self._parameters, self.moments, gradients)


class AdamW(nn.Optimizer):
    """optax.adamw semantics: bias-corrected moments, decoupled decay scaled by the lr.

    `decay_flags` (one per parameter) say who is decayed by `weight_decay`. Gradients are divided
    by `loss_scale` first (FixedLossScaleManager with drop_overflow_update=False).
    """

    def __init__(
        self,
        params,
        learning_rate,
        *,
        decay_flags,
        weight_decay=0.0,
        beta1=0.9,
        beta2=0.999,
        eps=1e-8,
        loss_scale=1.0,
    ):
        super().__init__(learning_rate, params, 0.0, loss_scale)
        self.beta1 = Tensor(beta1, ms.float32)
        self.beta2 = Tensor(beta2, ms.float32)
        self.eps = Tensor(eps, ms.float32)
        self.decay = tuple(Tensor(weight_decay if f else 0.0, ms.float32) for f in decay_flags)
        self.moments1 = self._parameters.clone(prefix="adam_m", init="zeros")
        self.moments2 = self._parameters.clone(prefix="adam_v", init="zeros")
        self.beta1_power = Parameter(Tensor(1.0, ms.float32), name="beta1_power")
        self.beta2_power = Parameter(Tensor(1.0, ms.float32), name="beta2_power")

    def construct(self, gradients):
        gradients = self.scale_grad(gradients)
        lr = self.get_lr()
        self.assignadd(self.global_step, self.global_step_increase_tensor)
        beta1_power = self.beta1_power * self.beta1
        beta2_power = self.beta2_power * self.beta2
        ops.assign(self.beta1_power, beta1_power)
        ops.assign(self.beta2_power, beta2_power)
        bc1, bc2 = 1.0 - beta1_power, 1.0 - beta2_power
        if self.is_group_lr:  # one lr per parameter
            update = ops.partial(_adamw_update, self.beta1, self.beta2, self.eps)
            return self.hyper_map(
                ops.partial(_adamw_group_lr, update, bc1, bc2),
                lr,
                self.decay,
                self._parameters,
                self.moments1,
                self.moments2,
                gradients,
            )
        update = ops.partial(_adamw_update, self.beta1, self.beta2, self.eps, lr, bc1, bc2)
        return self.hyper_map(
            update, self.decay, self._parameters, self.moments1, self.moments2, gradients
        )


def build(
    config: ConfigDict,
    params: list[Parameter],
    lr: np.ndarray,
    loss_scale: float = 1.0,
    lr_of: dict[str, np.ndarray] | None = None,
):
    """The optimizer named by config.optim, over `params`, with per-step learning rates `lr`
    (and `lr_of[name]` for the parameters given there: a fine-tuned backbone's)."""
    o = config.optim
    lr_array, lr = lr, Tensor(lr, ms.float32)
    family = (
        registry.info(config.model.name).family if config.model.name in registry.names() else None
    )
    if o.name == "adamw":
        by_lr = params
        if lr_of:  # group lr; the decay stays per parameter (decay_flags, in `params` order)
            by_lr = [
                {"params": g["params"], "lr": g["lr"]}
                for g in param_groups(params, 0.0, True, lr_of, lr_array)[:-1]
            ] + [{"order_params": params}]
        return AdamW(
            by_lr,
            lr,
            decay_flags=decays(params, o.decay_norm_and_bias, family),
            weight_decay=o.weight_decay,
            beta1=o.adam_b1,
            beta2=o.adam_b2,
            eps=o.adam_eps,
            loss_scale=loss_scale,
        )
    groups = param_groups(params, o.weight_decay, o.decay_norm_and_bias, lr_of, lr_array, family)
    if o.name == "sgd" and o.nesterov:
        return NesterovMomentum(
            groups, lr, o.momentum, weight_decay=o.weight_decay, loss_scale=loss_scale
        )
    if o.name == "sgd":
        return nn.Momentum(
            groups, lr, o.momentum, weight_decay=o.weight_decay, loss_scale=loss_scale
        )
    if o.name == "rmsprop":
        return nn.RMSProp(
            groups,
            lr,
            decay=o.rmsprop_decay,
            momentum=o.momentum,
            epsilon=o.eps,
            loss_scale=loss_scale,
            weight_decay=o.weight_decay,
        )
    raise ValueError(f"optim.name {o.name!r}; known: sgd, rmsprop, adamw")

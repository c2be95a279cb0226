"""The PyTorch side of the one-step parity: the reference model (pytorchcv HarDNet, timm HRNet)
with timm's optimizer factory, in float32 or float64. Results use the names of
tests/step_parity_jax.py (canonical parameter names, 'opt:<field>:<param>')."""

from __future__ import annotations

import copy

import numpy as np
import timm
import timm.optim
import torch
import torch.nn.functional as F
from pytorchcv.model_provider import get_model as pytorchcv_model

from models import layout, torch_import
from tests import step_cases
from tests.torch_utils import randomize_batchnorm

# The families with a PyTorch reference here; HLG's official code is not in this repository.
REFERENCES = {"hardnet68ds": "pytorchcv", "hrnet_w18_small": "timm"}


def reference(name: str) -> torch.nn.Module:
    """Random init, random BatchNorm affine params and statistics, dropout off."""
    torch.manual_seed(0)
    if REFERENCES[name] == "pytorchcv":
        model = pytorchcv_model(name, pretrained=False, num_classes=step_cases.NUM_CLASSES)
        model.features.final_pool = torch.nn.AdaptiveAvgPool2d(1)  # its AvgPool2d(7) needs 224
    else:
        model = timm.create_model(name, pretrained=False, num_classes=step_cases.NUM_CLASSES)
    randomize_batchnorm(model, seed=1)
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    return model


def canonical(name: str, tensors: dict[str, torch.Tensor], naming: str) -> dict[str, np.ndarray]:
    """PyTorch-named tensors (float64 kept) in canonical names and layouts."""
    out = {}
    for key, value in tensors.items():
        one = torch_import.torch_to_canonical(name, {key: value.detach().float()}, naming=naming)
        (ckey,) = one
        out[ckey] = layout.to_flax_layout(value.detach().cpu().double().numpy())
    return out


def optimizer(model: torch.nn.Module, case: step_cases.Case) -> torch.optim.Optimizer:
    """timm.optim.create_optimizer_v2 for the recipe's optimizer fields."""
    o = step_cases.config(case).optim
    kwargs = {}
    if o.name == "sgd":
        opt = "sgd" if o.nesterov else "momentum"  # timm: 'sgd' is SGD with Nesterov
        kwargs["momentum"] = o.momentum
    elif o.name == "rmsprop":
        opt = "rmsproptf"  # eps inside the sqrt, mean square from 1, lr inside the momentum
        kwargs.update(momentum=o.momentum, alpha=o.rmsprop_decay, eps=o.eps)
    else:
        opt = "adamw"
        kwargs.update(betas=(o.adam_b1, o.adam_b2), eps=o.adam_eps)
    return timm.optim.create_optimizer_v2(
        model,
        opt=opt,
        lr=step_cases.lr(case),
        weight_decay=o.weight_decay,
        filter_bias_and_bn=not o.decay_norm_and_bias,
        **kwargs,
    )


_STATE_FIELDS = {
    "momentum_buffer": "momentum",
    "square_avg": "mean_square",
    "exp_avg": "adam_m",
    "exp_avg_sq": "adam_v",
}


def run(case: step_cases.Case, ref: torch.nn.Module, batch: dict, dtype: torch.dtype) -> dict:
    c = step_cases.config(case)
    model = copy.deepcopy(ref).to(dtype).train()
    naming = torch_import.detect_naming(case.model, ref.state_dict().keys())
    x = torch.from_numpy(batch["input"].transpose(0, 3, 1, 2).copy()).to(dtype)
    labels = torch.from_numpy(batch["label"]).long()

    opt = optimizer(model, case)
    logits = model(x)
    a = c.train.label_smoothing
    if a and c.train.label_smoothing_mode == "others":
        k = logits.shape[-1]
        one_hot = F.one_hot(labels, k).to(dtype)
        targets = one_hot * (1 - a) + (1 - one_hot) * (a / (k - 1))
        loss = -(targets * F.log_softmax(logits, -1)).sum(-1).mean()
    else:
        loss = F.cross_entropy(logits, labels, label_smoothing=a)
    opt.zero_grad()
    loss.backward()
    opt.step()

    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out = {"loss": np.asarray(loss.item())}
    for key, value in canonical(case.model, sd, naming).items():
        kind = "stat" if layout.split_key(key)[1] in ("mean", "var") else "param"
        out[f"{kind}:{key}"] = value
    names = {id(p): n for n, p in model.named_parameters()}
    by_field: dict[str, dict[str, torch.Tensor]] = {}
    for p, state in opt.state.items():
        for field, value in state.items():
            if field not in _STATE_FIELDS:
                continue
            name = _STATE_FIELDS[field]
            if c.optim.name == "rmsprop" and field == "momentum_buffer":
                name = "rms_momentum"  # lr * g / rms, as MindSpore's and ours
            by_field.setdefault(name, {})[names[id(p)]] = value
    for field, tensors in by_field.items():
        for key, value in canonical(case.model, tensors, naming).items():
            out[f"opt:{field}:{key}"] = value
    return out

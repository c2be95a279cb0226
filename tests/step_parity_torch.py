"""The PyTorch side of the one-step parity: the reference model (pytorchcv HarDNet, timm HRNet)
with timm's optimizer factory, in float32 or float64; for HLG (no PyTorch model here) timm's
optimizer alone on our float64 gradients. Results use the names of tests/step_parity_jax.py
(canonical parameter names, 'opt:<field>:<param>')."""

from __future__ import annotations

import copy
import functools

import numpy as np
import timm
import timm.optim
import torch
import torch.nn.functional as F
from pytorchcv.model_provider import get_model as pytorchcv_model

from models import layout, torch_import
from tests import step_cases
from tests.torch_utils import randomize_batchnorm

# timm-style no_weight_decay() of the HLG builds, as their authors declare it: the official
# HLGTransformer (every size) returns {'cls_token'} (a parameter it never creates); the zoo's cell has
# absolute position embeddings and a cls token, which a timm recipe leaves undecayed.
NO_WEIGHT_DECAY = {
    "hlg_mobile": {"cls_token"},
    "hlg_mobile_zoo": {"pos_embed1", "pos_embed2", "pos_embed3", "pos_embed4", "cls"},
}


@functools.cache
def reference(name: str) -> torch.nn.Module:
    """Random init, random BatchNorm affine params and statistics, dropout off (callers copy)."""
    torch.manual_seed(0)
    if step_cases.MODELS[name].reference == "pytorchcv":
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


def run(
    cases: list[step_cases.Case], ref: torch.nn.Module, batch: dict, dtype: torch.dtype
) -> dict[str, dict[str, np.ndarray]]:
    """One step of each case of a model: one forward, then each case's loss, backward and
    timm optimizer on its own copy of the model."""
    (name,) = {case.model for case in cases}
    model = copy.deepcopy(ref).to(dtype).train()
    naming = torch_import.detect_naming(name, ref.state_dict().keys())
    x = torch.from_numpy(batch["input"].transpose(0, 3, 1, 2).copy()).to(dtype)
    logits = model(x)  # updates the running statistics once, as every case's step does
    params = [p for _, p in model.named_parameters()]
    out = {}
    labels = torch.from_numpy(batch["label"]).long()
    for case in cases:
        loss = _loss(case, logits, labels)
        grads = torch.autograd.grad(loss, params, retain_graph=True)
        stepped = copy.deepcopy(model)
        for p, g in zip(stepped.parameters(), grads, strict=True):
            p.grad = g
        opt = optimizer(stepped, case)
        opt.step()
        out[case.id] = {"loss": np.asarray(loss.item())}
        out[case.id].update(_result(case, stepped, opt, naming))
    return out


def _loss(case: step_cases.Case, logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """PyTorch's label smoothing (a / K); the zoo's a / (K - 1) written out."""
    c = step_cases.config(case).train
    a = c.label_smoothing
    if a and c.label_smoothing_mode == "others":
        k = logits.shape[-1]
        one_hot = F.one_hot(labels, k).to(logits.dtype)
        targets = one_hot * (1 - a) + (1 - one_hot) * (a / (k - 1))
        return -(targets * F.log_softmax(logits, -1)).sum(-1).mean()
    return F.cross_entropy(logits, labels, label_smoothing=a)


def _result(case: step_cases.Case, model: torch.nn.Module, opt, naming: str | None) -> dict:
    """Parameters, statistics and optimizer state in canonical names (naming None: the
    module's names are canonical already)."""

    def to_canonical(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
        if naming is None:
            return {k: v.detach().double().numpy() for k, v in tensors.items()}
        return canonical(case.model, tensors, naming)

    sd = {k: v for k, v in model.state_dict().items() if not k.endswith("num_batches_tracked")}
    out = {}
    for key, value in to_canonical(sd).items():
        kind = "stat" if layout.split_key(key)[1] in ("mean", "var") else "param"
        out[f"{kind}:{key}"] = value
    names = {id(p): n for n, p in model.named_parameters()}
    by_field: dict[str, dict[str, torch.Tensor]] = {}
    for p, state in opt.state.items():
        for field, value in state.items():
            if field not in _STATE_FIELDS:
                continue
            field_name = _STATE_FIELDS[field]
            if step_cases.config(case).optim.name == "rmsprop" and field == "momentum_buffer":
                field_name = "rms_momentum"  # lr * g / rms, as MindSpore's and ours
            by_field.setdefault(field_name, {})[names[id(p)]] = value
    for field, tensors in by_field.items():
        for key, value in to_canonical(tensors).items():
            out[f"opt:{field}:{key}"] = value
    return out


class Named(torch.nn.Module):
    """Tensors under our canonical dotted names, so that timm's name rules (1-D and '.bias'
    undecayed, no_weight_decay() names undecayed) see the names our optimizer sees."""

    def __init__(self, flat: dict[str, np.ndarray], no_weight_decay: set[str]):
        super().__init__()
        self._no_weight_decay = set(no_weight_decay)
        for key, value in flat.items():
            *path, leaf = key.split(".")
            module: torch.nn.Module = self
            for part in path:
                if part not in module._modules:
                    module.add_module(part, torch.nn.Module())
                module = module._modules[part]
            module.register_parameter(leaf, torch.nn.Parameter(torch.from_numpy(value)))

    def no_weight_decay(self) -> set[str]:
        return self._no_weight_decay


def optimizer_only(
    case: step_cases.Case, params: dict[str, np.ndarray], grads: dict[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], set[str]]:
    """timm's optimizer for the recipe, one step from `params` with `grads` (float64, canonical
    names, our layout: AdamW is elementwise). Returns 'update:<param>' (new minus old) and
    'opt:<field>:<param>', and the names timm's factory left undecayed."""
    model = Named(
        {k: np.asarray(v, np.float64) for k, v in params.items()}, NO_WEIGHT_DECAY[case.model]
    )
    for name, p in model.named_parameters():
        p.grad = torch.from_numpy(np.asarray(grads[name], np.float64))
    opt = optimizer(model, case)
    opt.step()
    undecayed = {
        name
        for group in opt.param_groups
        if group["weight_decay"] == 0.0
        for name, p in model.named_parameters()
        if any(p is q for q in group["params"])
    }
    out = {}
    for key, value in _result(case, model, opt, None).items():
        kind, _, name = key.partition(":")
        if kind == "param":
            out[f"update:{name}"] = value - np.asarray(params[name], np.float64)
        elif kind == "opt":
            out[key] = value
    return out, undecayed

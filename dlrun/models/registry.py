"""Model registry: a name maps to one builder (after torchvision's models/_api.py), plus the model contract.

Every model is a `Net`: `forward(x) = head(features(x))`, where `features` maps a batch to penultimate
features (N, D) and `head` is the last layer. Transfer learning freezes `features`; the report reads them.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional

import torch
from torch import nn

from dlrun.errors import DlrunError, unreadable_reason
from dlrun.registry import Registry

log = logging.getLogger(__name__)

Builder = Callable[..., "Net"]  # (cfg, in_shape, num_outputs, reg) -> Net
MODELS: Registry[Builder] = Registry("model")
register_model = MODELS.register
list_models = MODELS.names


# the activations a model may be built with (model.activation); one table for every family that takes one
ACTIVATIONS = {"relu": nn.ReLU, "leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "tanh": nn.Tanh, "sigmoid": nn.Sigmoid}


class Net(nn.Module):
    """features: (N, *in_shape) -> (N, D); head: (N, D) -> (N, num_outputs)."""

    def __init__(self, features: nn.Module, head: nn.Module):
        super().__init__()
        self.features = features
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def build(cfg: Any, in_shape: tuple[int, ...], num_outputs: int, reg: Any) -> Net:
    """Build `cfg.family` for inputs of `in_shape`, then load `cfg.weights` and apply `cfg.freeze`."""
    builder = MODELS.get(cfg.family)
    if cfg.weights == "DEFAULT" and cfg.family != "torchvision":
        raise DlrunError(f"model.weights=DEFAULT means torchvision's pretrained weights and needs model=torchvision; "
                         f"for model={cfg.family} give a local state dict file: model.weights=PATH")
    model = builder(cfg, tuple(in_shape), num_outputs, reg)
    initialise(model, getattr(cfg, "init", "default"), getattr(cfg, "init_bias", None))
    if cfg.weights and cfg.weights != "DEFAULT":  # DEFAULT is handled by the torchvision builder
        load_weights(model, cfg.weights)
    freeze(model, cfg.freeze)
    return model


def initialise(model: nn.Module, init: str, bias: Optional[float] = None) -> None:
    """model.init: kaiming (He et al., 2015: keeps ReLU activations' variance) or xavier (Glorot & Bengio, 2010: for
    tanh and sigmoid) on every Linear and Conv weight; default keeps PyTorch's. model.init_bias: a constant bias."""
    for module in model.modules():
        if not isinstance(module, (nn.Linear, nn.Conv1d, nn.Conv2d)):
            continue
        if init == "kaiming":
            nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        elif init == "xavier":
            nn.init.xavier_uniform_(module.weight)
        if module.bias is not None:
            if bias is not None:
                nn.init.constant_(module.bias, bias)
            elif init != "default":
                nn.init.zeros_(module.bias)


def load_weights(model: Net, path: str) -> None:
    """Load a local state dict (weights_only). Head tensors whose shape differs are skipped: a new head."""
    from pathlib import Path

    if not Path(path).is_file():
        raise DlrunError(f"model.weights={path!r}: no such file (a state dict saved with torch.save)")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure is a bad file from the user
        raise DlrunError(f"model.weights={path!r} cannot be read: {unreadable_reason(err)}; give a state dict "
                         "saved with torch.save(model.state_dict(), path)") from None
    if isinstance(state, dict) and "model" in state and isinstance(state["model"], dict):
        state = state["model"]  # a dlrun checkpoint
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise DlrunError(f"model.weights={path!r} holds a {type(state).__name__}, not a state dict "
                         "(save one with torch.save(model.state_dict(), path))")
    own = model.state_dict()
    state = _align_prefix(state, own)
    fitting = {k: v for k, v in state.items() if k in own and own[k].shape == v.shape}
    skipped = sorted(set(state) - set(fitting))
    missing = sorted(set(own) - set(fitting))
    features = {k for k in own if k.startswith("features.")}
    same_layers = {k for k in state if k.startswith("features.")} == features  # the same network, other sizes?
    if not same_layers and not any(k.startswith("features.") for k in fitting):  # a head tensor fits by accident
        raise DlrunError(f"model.weights={path!r} shares no tensor with this model "
                         f"(its keys start {', '.join(list(state)[:3])}); was it saved from the same architecture?")
    wrong = [k for k, v in state.items() if k in own and own[k].shape != v.shape and not k.startswith("head.")]
    if wrong:  # a new head is the point of transfer learning; a feature tensor of another shape is another model
        key = wrong[0]
        raise DlrunError(f"model.weights={path!r}: {key} has shape {tuple(state[key].shape)} in the file but "
                         f"{tuple(own[key].shape)} in this model ({len(wrong)} such tensors); only the head may "
                         "differ: use the model.* sizes and the input size the weights were trained with")
    model.load_state_dict(fitting, strict=False)
    log.info("loaded %d tensors from %s; skipped %s; kept initial %s", len(fitting), path, skipped, missing)


def _align_prefix(state: dict, own: dict) -> dict:
    """Map a plain state dict (e.g. torchvision's `conv1.weight`) onto the Net's keys (`features.model.conv1.weight`)
    when every one of its keys sits under one common prefix of the Net's keys."""
    if any(k in own for k in state):
        return state
    first = next(iter(state), None)
    match = next((k for k in own if first is not None and k.endswith("." + first)), None)
    if match is None:
        return state
    prefix = match[: -len(first)]
    return {prefix + k: v for k, v in state.items()}


def freeze(model: Net, mode: str) -> None:
    """none: train all; features: freeze model.features; all_but_head: freeze every parameter not in head."""
    if mode == "none":
        return
    head = {id(p) for p in model.head.parameters()}
    for name, p in model.named_parameters():
        if mode == "features" and name.startswith("features."):
            p.requires_grad_(False)
        elif mode == "all_but_head" and id(p) not in head:
            p.requires_grad_(False)

"""Multi-layer perceptron on the flattened input: [Linear -> (BatchNorm) -> activation -> (Dropout)] x L."""

from __future__ import annotations

import math

from torch import nn

from dlrun.models.registry import ACTIVATIONS, Net, register_model



@register_model("mlp")
def build_mlp(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """MLP sized from in_shape: any input is flattened to prod(in_shape) features."""
    layers: list[nn.Module] = [nn.Flatten()]
    width = math.prod(in_shape)
    for hidden in cfg.hidden:
        layers.append(nn.Linear(width, hidden))
        if reg.batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(ACTIVATIONS[cfg.activation]())
        if reg.dropout > 0:
            layers.append(nn.Dropout(reg.dropout))
        width = hidden
    return Net(nn.Sequential(*layers), nn.Linear(width, num_outputs))

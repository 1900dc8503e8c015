"""LeNet-5 (LeCun, Bottou, Bengio & Haffner, 1998, "Gradient-based learning applied to document recognition").

[5x5 conv -> activation -> 2x2 subsampling] x 2 -> fully connected 120 -> 84 -> head. The paper's 32x32 input
shrinks 32 -> 28 -> 14 -> 10 -> 5, so a 16x5x5 map feeds the first fully connected layer; here the sides are
computed from in_shape, and small inputs get padding so scikit-learn's 8x8 digits end as a 2x2 map, not nothing.
"""

from __future__ import annotations

import math

from torch import nn

from dlrun.models.registry import ACTIVATIONS, Net, register_model
from dlrun.models.shapes import conv_side, image_shape

VALID_FROM = 10  # a side >= 10 gets the paper's unpadded ("valid") 5x5 conv; 8x8 digits would shrink to 4, 2, 0


@register_model("lenet")
def build_lenet(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """LeNet-5 for (C, H, W) inputs: one conv per cfg.channels entry, one hidden layer per cfg.fc entry."""
    in_channels, height, width = image_shape("lenet", in_shape)
    activation = ACTIVATIONS[cfg.activation]

    # convolutions: (N, C, H, W) -> (N, channels[-1], h, w)
    layers: list[nn.Module] = []
    sides = (height, width)
    for out_channels in cfg.channels:
        padding = tuple(0 if side >= VALID_FROM else 2 for side in sides)  # 2 = "same" for a 5x5 kernel
        layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=5, padding=padding))
        sides = tuple(conv_side(side, 5, padding=pad) for side, pad in zip(sides, padding))
        if reg.batchnorm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(activation())
        # LeNet's subsampling averages 2x2 blocks; a side already at 1 is left alone instead of vanishing
        pool = tuple(2 if side >= 2 else 1 for side in sides)
        if pool != (1, 1):
            layers.append(nn.AvgPool2d(pool))
            sides = tuple(side // k for side, k in zip(sides, pool))
        in_channels = out_channels

    # fully connected: (N, channels[-1] * h * w) -> (N, fc[-1]), the penultimate features
    layers.append(nn.Flatten())
    features = in_channels * math.prod(sides)
    for hidden in cfg.fc:
        layers.append(nn.Linear(features, hidden))
        if reg.batchnorm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(activation())
        if reg.dropout > 0:
            layers.append(nn.Dropout(reg.dropout))
        features = hidden
    return Net(nn.Sequential(*layers), nn.Linear(features, num_outputs))

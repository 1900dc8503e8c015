"""A small GoogLeNet (Szegedy et al., 2015, "Going deeper with convolutions"): a stem, then cfg.blocks inception
blocks with a max-pool after every second one, global average pool, dropout, head.

An inception block runs four branches on the same input and concatenates them on channels (fig. 2b):
1x1 | 1x1 -> 3x3 | 1x1 -> 5x5 | 3x3 max-pool -> 1x1. The 1x1 "reductions" keep the 3x3 and 5x5 convs cheap.
Sized for small images: a 3x3 stride-1 stem keeps 8x8 digits at 8x8 (GoogLeNet's stem divides 224 by 8), and a
max-pool only runs while the map is at least 2 pixels a side. reg.batchnorm adds a BatchNorm after every conv,
which is BN-Inception (Ioffe & Szegedy, 2015).
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.models.registry import Net, register_model
from dlrun.models.shapes import conv_side, image_shape

SMALL_IMAGE = 64
MAX_GROWTH = 4  # branch widths double every two blocks up to 4x, as GoogLeNet goes from 256 channels (3a) to 1024 (5b)


def conv_unit(in_channels: int, out_channels: int, kernel: int, batchnorm: bool, stride: int = 1) -> nn.Sequential:
    """conv ("same" padding at stride 1) -> (BatchNorm) -> ReLU."""
    conv = nn.Conv2d(in_channels, out_channels, kernel, stride, padding=kernel // 2, bias=not batchnorm)
    layers: list[nn.Module] = [conv]
    if batchnorm:
        layers.append(nn.BatchNorm2d(out_channels))
    return nn.Sequential(*layers, nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    """(N, C_in, H, W) -> (N, 8 * unit, H, W); unit=32 is GoogLeNet's inception (3a): 64 | 96->128 | 16->32 | 32."""

    def __init__(self, in_channels: int, unit: int, batchnorm: bool):
        super().__init__()
        self.branch1 = conv_unit(in_channels, 2 * unit, 1, batchnorm)
        self.branch3 = nn.Sequential(conv_unit(in_channels, 3 * unit, 1, batchnorm),
                                     conv_unit(3 * unit, 4 * unit, 3, batchnorm))
        reduced = max(1, unit // 2)
        self.branch5 = nn.Sequential(conv_unit(in_channels, reduced, 1, batchnorm),
                                     conv_unit(reduced, unit, 5, batchnorm))
        self.branch_pool = nn.Sequential(nn.MaxPool2d(3, stride=1, padding=1),
                                         conv_unit(in_channels, unit, 1, batchnorm))
        self.out_channels = 8 * unit

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        branches = (self.branch1(x), self.branch3(x), self.branch5(x), self.branch_pool(x))
        return torch.cat(branches, dim=1)  # (N, 2u + 4u + u + u, H, W)


@register_model("inception")
def build_inception(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """Inception network for (C, H, W) inputs: cfg.width stem channels, cfg.blocks inception blocks."""
    in_channels, height, width = image_shape("inception", in_shape)
    sides = (height, width)

    if max(sides) <= SMALL_IMAGE:  # (N, C, H, W) -> (N, width, H, W)
        layers: list[nn.Module] = [conv_unit(in_channels, cfg.width, 3, reg.batchnorm)]
    else:  # GoogLeNet's 7x7 stride-2 conv and max-pool: (N, C, H, W) -> (N, width, H / 4, W / 4)
        layers = [conv_unit(in_channels, cfg.width, 7, reg.batchnorm, stride=2), nn.MaxPool2d(3, stride=2, padding=1)]
        sides = tuple(conv_side(conv_side(side, 7, 2, 3), 3, 2, 1) for side in sides)

    # inception blocks: the first outputs 4 * width channels; the width doubles every second block, when maps halve
    channels = cfg.width
    for index in range(cfg.blocks):
        unit = max(1, cfg.width // 2) * min(2 ** (index // 2), MAX_GROWTH)
        block = InceptionBlock(channels, unit, reg.batchnorm)
        layers.append(block)
        channels = block.out_channels
        last = index == cfg.blocks - 1
        if index % 2 == 1 and not last and max(sides) >= 2:
            layers.append(nn.MaxPool2d(3, stride=2, padding=1))  # halves a side, rounding up; 1 stays 1
            sides = tuple(conv_side(side, 3, 2, 1) for side in sides)

    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (N, channels)
    if reg.dropout > 0:
        layers.append(nn.Dropout(reg.dropout))  # GoogLeNet: 40% dropout before the classifier
    return Net(nn.Sequential(*layers), nn.Linear(channels, num_outputs))

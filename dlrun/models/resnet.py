"""ResNet-18 and -34 (He, Zhang, Ren & Sun, 2016, "Deep residual learning for image recognition").

stem -> four stages of basic blocks (two 3x3 convs plus an identity shortcut) with cfg.width * (1, 2, 4, 8) channels,
the last three halving the map -> global average pool -> head. Images up to 64 pixels a side get the CIFAR stem
of the paper's sec. 4.2 (one 3x3 stride-1 conv, no max-pool): the ImageNet stem (7x7 stride 2 + max-pool) would
shrink 32x32 to 8x8 before the first block and 8x8 digits to 2x2.

BatchNorm is part of the architecture (sec. 3.4): it is always there, whatever reg.batchnorm says.
"""

from __future__ import annotations

import torch
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.registry import Net, register_model
from dlrun.models.shapes import image_shape

BLOCKS = {18: (2, 2, 2, 2), 34: (3, 4, 6, 3)}  # basic blocks per stage (Table 1)
SMALL_IMAGE = 64


class BasicBlock(nn.Module):
    """(N, C_in, H, W) -> (N, C_out, H / stride, W / stride): relu(bn(conv(relu(bn(conv(x))))) + shortcut(x))."""

    def __init__(self, in_channels: int, out_channels: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False)  # BN has a bias
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            # option B of sec. 3.3: a strided 1x1 projection where the shape changes, identity elsewhere
            self.shortcut = nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                                          nn.BatchNorm2d(out_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return torch.relu(out + self.shortcut(x))


@register_model("resnet")
def build_resnet(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """ResNet-18/34 (cfg.variant) for (C, H, W) inputs, cfg.width channels in the first stage."""
    if cfg.variant not in BLOCKS:
        raise DlrunError(f"model.variant={cfg.variant!r} is not a basic-block ResNet, "
                         f"expected one of {', '.join(map(str, BLOCKS))}")
    in_channels, height, width = image_shape("resnet", in_shape)

    if max(height, width) <= SMALL_IMAGE:  # (N, C, H, W) -> (N, width, H, W)
        layers: list[nn.Module] = [nn.Conv2d(in_channels, cfg.width, 3, padding=1, bias=False)]
    else:  # (N, C, H, W) -> (N, width, H / 4, W / 4)
        layers = [nn.Conv2d(in_channels, cfg.width, 7, stride=2, padding=3, bias=False)]
    layers += [nn.BatchNorm2d(cfg.width), nn.ReLU(inplace=True)]
    if max(height, width) > SMALL_IMAGE:
        layers.append(nn.MaxPool2d(3, stride=2, padding=1))

    # stages: (N, width, H, W) -> (N, 8 * width, H / 8, W / 8); a stride-2 3x3 conv with padding 1 keeps a 1x1 map
    channels = cfg.width
    for stage, blocks in enumerate(BLOCKS[cfg.variant]):
        out_channels = cfg.width * 2**stage
        for block in range(blocks):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(BasicBlock(channels, out_channels, stride))
            channels = out_channels

    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten()]  # (N, 8 * width)
    if reg.dropout > 0:
        layers.append(nn.Dropout(reg.dropout))
    net = Net(nn.Sequential(*layers), nn.Linear(channels, num_outputs))
    for module in net.modules():
        if isinstance(module, nn.Conv2d):  # He initialisation, as in the paper and torchvision
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
    return net

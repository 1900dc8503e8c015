"""VGG (Simonyan & Zisserman, 2015, "Very deep convolutional networks for large-scale image recognition").

Five stages of 3x3 convs (stride 1, "same" padding), each followed by a 2x2 max-pool, then two fully connected
layers with dropout. Stage widths are cfg.width * (1, 2, 4, 8, 8): 64-128-256-512-512 in the paper. Sized from the
input: a stage is pooled only while its map is at least 2 pixels a side, so 8x8 digits pool 8 -> 4 -> 2 -> 1 and
keep their last two stages at 1x1; adaptive average pooling then caps the map at the paper's 7x7 (224x224 inputs).
"""

from __future__ import annotations

from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.registry import Net, register_model
from dlrun.models.shapes import image_shape

# convs per stage, Table 1's configurations A (11 weight layers), B (13) and D (16), each with 3 fc layers
STAGES = {11: (1, 1, 2, 2, 2), 13: (2, 2, 2, 2, 2), 16: (2, 2, 3, 3, 3)}
WIDTHS = (1, 2, 4, 8, 8)  # channels of each stage, as multiples of cfg.width
POOLED_SIDE = 7


@register_model("vgg")
def build_vgg(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """VGG-11/13/16 (cfg.variant) for (C, H, W) inputs; BatchNorm after each conv when reg.batchnorm."""
    if cfg.variant not in STAGES:
        raise DlrunError(f"model.variant={cfg.variant!r} is not a VGG configuration, "
                         f"expected one of {', '.join(map(str, STAGES))}")
    in_channels, height, width = image_shape("vgg", in_shape)

    # convolutions: (N, C, H, W) -> (N, 8 * width, h, w)
    layers: list[nn.Module] = []
    sides = (height, width)
    for convs, multiple in zip(STAGES[cfg.variant], WIDTHS):
        out_channels = multiple * cfg.width
        for _ in range(convs):
            layers.append(nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1))  # keeps the side
            if reg.batchnorm:
                layers.append(nn.BatchNorm2d(out_channels))  # the "_bn" variants (Ioffe & Szegedy, 2015)
            layers.append(nn.ReLU(inplace=True))
            in_channels = out_channels
        pool = tuple(2 if side >= 2 else 1 for side in sides)  # a side of 1 is not halved to nothing
        if pool != (1, 1):
            layers.append(nn.MaxPool2d(pool))
            sides = tuple(side // k for side, k in zip(sides, pool))
    pooled = tuple(min(side, POOLED_SIDE) for side in sides)
    layers += [nn.AdaptiveAvgPool2d(pooled), nn.Flatten()]  # (N, 8 * width * ph * pw)

    # classifier: [fc -> ReLU -> dropout] x 2, as in torchvision's VGG
    features = in_channels * pooled[0] * pooled[1]
    for _ in range(2):
        layers += [nn.Linear(features, cfg.fc), nn.ReLU(inplace=True)]
        if reg.dropout > 0:
            layers.append(nn.Dropout(reg.dropout))
        features = cfg.fc
    net = Net(nn.Sequential(*layers), nn.Linear(features, num_outputs))  # features: (N, fc)
    _init(net)
    return net


def _init(net: nn.Module) -> None:
    """He initialisation for the convs (He et al., 2015), as torchvision does: PyTorch's default init shrinks the
    signal layer after layer, and VGG-16 without BatchNorm then barely trains."""
    for module in net.modules():
        if isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            nn.init.zeros_(module.bias)

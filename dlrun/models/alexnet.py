"""AlexNet (Krizhevsky, Sutskever & Hinton, 2012, "ImageNet classification with deep convolutional neural networks"),
scaled for small images.

Five convs with width * (1, 3, 6, 4, 4) channels (64-192-384-256-256 at width 64, torchvision's one-GPU version),
overlapping 3x3 stride-2 max-pools after convs 1, 2 and 5 (sec. 3.4), then two fully connected layers of cfg.fc
units with dropout (sec. 4.2; 4096 units in the paper). Local response normalisation (sec. 3.3) is left out, as
torchvision does; reg.batchnorm puts a BatchNorm after each conv instead.
"""

from __future__ import annotations

from torch import nn

from dlrun.models.registry import Net, register_model
from dlrun.models.shapes import conv_side, image_shape

CONVS = (  # (channels as a multiple of cfg.width, kernel side, followed by a max-pool)
    (1, 3, True),  # 11x11 stride 4 on images larger than SMALL_IMAGE
    (3, 5, True),
    (6, 3, False),
    (4, 3, False),
    (4, 3, True),
)
SMALL_IMAGE = 64  # up to this side, an 11x11 stride-4 first conv would throw away most pixels (32x32 -> 7x7)
POOLED_SIDE = 6  # the paper's last map is 6x6; adaptive pooling caps larger maps at that


@register_model("alexnet")
def build_alexnet(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """AlexNet for (C, H, W) inputs; cfg.width scales the convs, cfg.fc the two hidden fully connected layers."""
    in_channels, height, width = image_shape("alexnet", in_shape)
    large = max(height, width) > SMALL_IMAGE

    # convolutions: (N, C, H, W) -> (N, 4 * width, h, w)
    layers: list[nn.Module] = []
    sides = (height, width)
    for index, (multiple, kernel, pool) in enumerate(CONVS):
        out_channels = multiple * cfg.width
        # stride 1 with "same" padding keeps the side (32 -> 32); the paper's first conv takes 224 -> 55
        kernel, stride, padding = (11, 4, 2) if index == 0 and large else (kernel, 1, kernel // 2)
        layers.append(nn.Conv2d(in_channels, out_channels, kernel, stride, padding))
        sides = tuple(conv_side(side, kernel, stride, padding) for side in sides)
        if reg.batchnorm:
            layers.append(nn.BatchNorm2d(out_channels))
        layers.append(nn.ReLU(inplace=True))
        # overlapping pooling; padding 1 halves (rounding up) any side, and a 1x1 map is not pooled at all
        if pool and max(sides) >= 2:
            layers.append(nn.MaxPool2d(kernel_size=3, stride=2, padding=1))
            sides = tuple(conv_side(side, 3, 2, 1) for side in sides)
        in_channels = out_channels
    pooled = tuple(min(side, POOLED_SIDE) for side in sides)
    layers += [nn.AdaptiveAvgPool2d(pooled), nn.Flatten()]  # (N, 4 * width * ph * pw)

    # classifier: dropout before each hidden layer, as in the paper (sec. 4.2) and torchvision
    features = in_channels * pooled[0] * pooled[1]
    for _ in range(2):
        if reg.dropout > 0:
            layers.append(nn.Dropout(reg.dropout))
        layers += [nn.Linear(features, cfg.fc), nn.ReLU(inplace=True)]
        features = cfg.fc
    return Net(nn.Sequential(*layers), nn.Linear(features, num_outputs))  # features: (N, fc)

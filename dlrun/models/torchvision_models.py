"""Any image classifier of torchvision (`torchvision.models.list_models(module=torchvision.models)`), refitted:
its last classification layer becomes nn.Identity, so the model computes penultimate features, and a new
nn.Linear head maps them to the dataset's outputs.

torchvision models expect 3-channel images of ImageNet size. Grey images are repeated to 3 channels and images
smaller than the model accepts are upsampled, both inside `features`, so resnet18 runs on 8x8 digits.
Nothing is downloaded unless model.download=true: model.weights=DEFAULT (torchvision's pretrained weights) needs it.
"""

from __future__ import annotations

import difflib
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dlrun.errors import DlrunError
from dlrun.models.registry import Net, register_model
from dlrun.models.shapes import image_shape

MIN_SIDE = 32  # below this, the strided stems of most ImageNet models reduce the map to nothing
FIXED_SIZE = ("vit_", "maxvit_")  # their position embeddings / attention windows fix the input size when built
AUX_LOGITS = ("googlenet", "inception_v3")  # they return (logits, aux logits) in training unless told not to
LIST_ALL = 'python -c "import torchvision; print(torchvision.models.list_models(module=torchvision.models))"'


class ImageAdapter(nn.Module):
    """(N, C, H, W) -> (N, 3, H', W'): 1 channel repeated to 3; sides below min_side upsampled (bilinear) to it,
    or the image resized to exactly exact_side for models that accept only their training size (ViT, MaxViT)."""

    def __init__(self, in_channels: int, min_side: int, exact_side: int | None):
        super().__init__()
        self.repeat = in_channels == 1
        self.min_side = min_side
        self.exact_side = exact_side

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.repeat:
            x = x.expand(-1, 3, -1, -1)  # a view: no copy
        height, width = x.shape[-2:]
        if self.exact_side is not None:
            size = (self.exact_side, self.exact_side)
        else:
            size = (max(height, self.min_side), max(width, self.min_side))
        if size != (height, width):
            x = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
        return x


@register_model("torchvision")
def build_torchvision(cfg, in_shape: tuple[int, ...], num_outputs: int, reg) -> Net:
    """torchvision model cfg.name with a new head; reg is not applied (the architecture has its own)."""
    from torchvision import models  # ~1 s to import: only when this family is used

    in_channels, _, _ = image_shape("torchvision", in_shape)
    if in_channels not in (1, 3):
        raise DlrunError(f"model=torchvision takes 1- or 3-channel images (its first conv has 3 input channels); "
                         f"the dataset gives {in_channels} channels, shape {tuple(in_shape)}")
    _check_name(cfg.name, models)
    if cfg.weights == "DEFAULT" and not cfg.download:
        raise DlrunError("model.weights=DEFAULT means torchvision's pretrained weights, which are downloaded: "
                         "pass model.download=true to fetch them, or a local state dict in model.weights=PATH")

    pretrained = cfg.weights == "DEFAULT"  # a local path is loaded later by registry.build, into the whole Net
    options = {"aux_logits": False} if cfg.name in AUX_LOGITS else {}
    if cfg.name in AUX_LOGITS and not pretrained:
        options["init_weights"] = True  # their documented initialisation; leaving it unset warns
    model = models.get_model(cfg.name, weights="DEFAULT" if pretrained else None, **options)
    in_features = _drop_last_layer(model)

    # the smallest side torchvision checked the pretrained weights on (its meta["min_size"]): 1 for resnet18,
    # 75 for inception_v3, and the one size ViT and MaxViT accept (224)
    min_side = max(models.get_model_weights(cfg.name).DEFAULT.meta["min_size"])
    exact_side = min_side if cfg.name.startswith(FIXED_SIZE) else None
    adapter = ImageAdapter(in_channels, max(MIN_SIDE, min_side), exact_side)
    features = nn.Sequential(OrderedDict(adapt=adapter, model=model))  # (N, C, H, W) -> (N, in_features)
    return Net(features, nn.Linear(in_features, num_outputs))


def _check_name(name: str, models) -> None:
    """Accept image classifiers only; otherwise say what the name is and list close matches."""
    classifiers = models.list_models(module=models)
    if name in classifiers:
        return
    if name in models.list_models():
        what = "a torchvision detection, segmentation, video, optical-flow or quantized model, not an image classifier"
    else:
        what = "not a torchvision model"
    close = difflib.get_close_matches(name, classifiers, n=5, cutoff=0.5)
    suggestion = f"close matches: {', '.join(close)}" if close else f"for example {', '.join(classifiers[:5])}"
    raise DlrunError(f"model.name={name!r} is {what}; {suggestion}. List them all with: {LIST_ALL}")


def _drop_last_layer(model: nn.Module) -> int:
    """Replace the classification layer by nn.Identity and return its input width.

    It is the last nn.Linear registered (`fc`, `classifier[-1]`, `heads.head`, `head`), or, in models without
    one, the last nn.Conv2d (squeezenet classifies with a 1x1 conv, then ReLU and average pooling).
    """
    linears = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    convs = [(name, m) for name, m in model.named_modules() if isinstance(m, nn.Conv2d)]
    name, layer = linears[-1] if linears else convs[-1]
    parent_name, _, child_name = name.rpartition(".")
    setattr(model.get_submodule(parent_name), child_name, nn.Identity())
    return layer.in_features if isinstance(layer, nn.Linear) else layer.in_channels

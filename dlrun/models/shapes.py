"""Input-shape arithmetic shared by the convolutional families: is the input an image, how big is a conv's output."""

from __future__ import annotations

from dlrun.errors import DlrunError


def image_shape(family: str, in_shape: tuple[int, ...]) -> tuple[int, int, int]:
    """(C, H, W) from in_shape, or a DlrunError that names the family, the shape given and what to use instead."""
    if len(in_shape) == 3:
        channels, height, width = in_shape
        return channels, height, width
    given = {1: "a vector of features per sample", 2: "a sequence of time steps, each a vector of features"}
    raise DlrunError(
        f"model={family} needs image inputs (C, H, W); the dataset gives {tuple(in_shape)} "
        f"({given.get(len(in_shape), f'{len(in_shape)} dimensions per sample')}); "
        "use model=mlp for feature vectors, or model=lstm / model=gru for sequences"
    )


def conv_side(side: int, kernel: int, stride: int = 1, padding: int = 0) -> int:
    """Output side of a conv or pool (PyTorch's formula, floor mode)."""
    return (side + 2 * padding - kernel) // stride + 1

"""Your own images: dataset.root holds one folder per class (root/cat/1.png, root/dog/2.jpg), as for
torchvision.datasets.ImageFolder, which finds them. Classes are the folder names in sorted order.

Every image is resized to dataset.image_size x dataset.image_size (aspect ratio not kept) and, with
dataset.grayscale=true, converted to one channel; all of them are read into memory at once, one after another.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset
from dlrun.errors import DlrunError

log = logging.getLogger(__name__)


@register_dataset("image_folder")
def load_image_folder(cfg) -> Source:
    x, y, classes, root, size = _read_folder(cfg, str(cfg.root), "dataset.root")
    if len(classes) < 2:
        raise DlrunError(f"dataset.root={str(cfg.root)!r} has {len(classes)} class folder "
                         f"({', '.join(classes)}); classification needs at least 2, one per class")
    log.info("image_folder: %d images in %d classes from %s", len(x), len(classes), root)

    def load_like(path: str, key: str) -> Source:
        """Another folder with the same class folders (dataset.val_from / test_from)."""
        other_x, other_y, other_classes, _, _ = _read_folder(cfg, path, key)
        if other_classes != classes:
            missing, extra = sorted(set(classes) - set(other_classes)), sorted(set(other_classes) - set(classes))
            raise DlrunError(f"{key}={path!r} must have the class folders of dataset.root={str(cfg.root)!r}: "
                             + "; ".join(part for part in (f"missing {', '.join(missing)}" if missing else "",
                                                           f"extra {', '.join(extra)}" if extra else "") if part))
        return Source(x=other_x, y=other_y, task="classification", class_names=list(classes),
                      description=f"image folder {path}: {len(other_x)} images")

    return Source(x=x, y=y, task="classification", class_names=list(classes),
                  description=f"image folder {root}: {len(x)} images resized to {size[0]}x{size[1]}"
                              f"{', grayscale' if cfg.grayscale else ''}", load_like=load_like)


class _UnusableMode(Exception):
    """An image whose pixels 8-bit RGB cannot hold (PIL would clip them silently)."""


def _load_rgb(path: str):
    """torchvision's default loader (RGB), refusing modes whose conversion would clip the values."""
    from PIL import Image

    with open(path, "rb") as f:
        image = Image.open(f)
        if image.mode in ("I", "F") or image.mode.startswith("I;16"):
            raise _UnusableMode(image.mode)
        return image.convert("RGB")


def _read_folder(cfg, folder: str, key: str):
    """(x (N, C, H, W) float32 in [0, 1], y (N,), class names, root, size) of one folder of class folders."""
    from torchvision import transforms
    from torchvision.datasets import ImageFolder

    root = Path(folder).expanduser()
    if not root.is_dir():
        raise DlrunError(f"{key}={folder!r} is not a folder ({root.resolve()}); image_folder expects "
                         f"one sub-folder of images per class, e.g. root/cat/1.png, root/dog/2.png")
    if cfg.image_size < 1:
        raise DlrunError(f"dataset.image_size must be >= 1 pixel, got {cfg.image_size}")
    size = (cfg.image_size, cfg.image_size)
    to_array = transforms.Compose(([transforms.Grayscale(num_output_channels=1)] if cfg.grayscale else [])
                                  + [transforms.Resize(size), transforms.ToTensor()])  # ToTensor: [0, 1], (C, H, W)
    try:
        images = ImageFolder(str(root), transform=to_array, loader=_load_rgb)
    except FileNotFoundError as err:  # no class folders, or a class folder without images
        raise DlrunError(f"{key}={folder!r}: {err}. image_folder expects one sub-folder of images "
                         f"per class, e.g. root/cat/1.png, root/dog/2.png") from None
    channels = 1 if cfg.grayscale else 3
    x = np.empty((len(images), channels, *size), dtype=np.float32)  # (N, C, H, W)
    for i, (path, _) in enumerate(images.samples):
        try:
            x[i] = images[i][0].numpy()
        except OSError as err:  # PIL's UnidentifiedImageError, a truncated file
            raise DlrunError(f"{key}={folder!r}: cannot read image {path}: {err}. "
                             f"Delete or replace the file") from None
        except _UnusableMode as err:
            raise DlrunError(f"{key}={folder!r}: image {path} is in PIL mode {err} (16-bit or floating point): "
                             "converting it to 8-bit RGB would clip its values; save it as an 8-bit image") from None
    return x, np.asarray(images.targets, dtype=np.int64), list(images.classes), root, size

"""MNIST, Fashion-MNIST, CIFAR-10 and SVHN, read with torchvision.datasets from dataset.root.

The official train and test parts are concatenated into one pool (train first, then test) that dlrun re-splits
by split.*, so the test split here is NOT the official test set. Files are fetched only when dataset.download=true;
otherwise a missing dataset is a DlrunError naming the folder and the files torchvision looked for.
Images come back as float32 in [0, 1], (N, C, H, W): 4 bytes a pixel, so the pooled CIFAR-10 takes 0.7 GB and
SVHN 1.2 GB of memory.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset
from dlrun.errors import DlrunError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Spec:
    class_name: str  # in torchvision.datasets
    layout: str  # how the class stores `data`: NHW (torch tensor), NHWC or NCHW (numpy)
    labels: str  # the attribute holding the class indices
    parts: tuple[dict, dict]  # constructor arguments of the official train and test parts
    description: str


_TRAIN_TEST = ({"train": True}, {"train": False})
SPECS: dict[str, _Spec] = {
    "mnist": _Spec("MNIST", "NHW", "targets", _TRAIN_TEST,
                   "MNIST handwritten digits, 28x28 grey, official train+test pooled"),
    "fashion_mnist": _Spec("FashionMNIST", "NHW", "targets", _TRAIN_TEST,
                           "Fashion-MNIST clothing, 28x28 grey, official train+test pooled"),
    "cifar10": _Spec("CIFAR10", "NHWC", "targets", _TRAIN_TEST,
                     "CIFAR-10 objects, 32x32 colour, official train+test pooled"),
    "svhn": _Spec("SVHN", "NCHW", "labels", ({"split": "train"}, {"split": "test"}),
                  "SVHN house-number digits, 32x32 colour, official train+test pooled (not 'extra')"),
}


@register_dataset(*SPECS)
def load_torchvision_set(cfg) -> Source:
    import torchvision.datasets

    spec = SPECS[cfg.name]
    dataset_class = getattr(torchvision.datasets, spec.class_name)
    root = Path(os.path.expanduser(str(cfg.root)))
    try:
        parts = [dataset_class(str(root), download=cfg.download, **kwargs) for kwargs in spec.parts]
    except (RuntimeError, OSError) as err:  # "Dataset not found or corrupted", or a failed download (URLError)
        raise DlrunError(_not_found_message(cfg, dataset_class, root, err)) from None

    images = np.concatenate([_images(part, spec.layout) for part in parts])  # (N, C, H, W) uint8
    x = images.astype(np.float32)
    x /= 255.0  # in place: the pooled SVHN is 1.2 GB as float32, avoid a second copy
    y = np.concatenate([np.asarray(getattr(part, spec.labels), dtype=np.int64) for part in parts])
    # SVHN has no `classes`; torchvision already maps its label 10 to digit 0
    class_names = [str(d) for d in range(10)] if cfg.name == "svhn" else [str(c) for c in parts[0].classes]
    log.info("%s: %d images of %s from %s", cfg.name, len(x), "x".join(map(str, x.shape[1:])), root)
    return Source(x=x, y=y, task="classification", class_names=class_names, description=spec.description)


def _images(part, layout: str) -> np.ndarray:
    """One torchvision dataset's images as (N, C, H, W) uint8."""
    data = np.asarray(part.data)
    if layout == "NHW":  # MNIST family: (N, 28, 28)
        return data[:, None, :, :]
    if layout == "NHWC":  # CIFAR: (N, 32, 32, 3)
        return data.transpose(0, 3, 1, 2)
    return data  # SVHN is stored (N, 3, 32, 32) already


def _expected_files(dataset_class, root: Path) -> tuple[Path, list[str]]:
    """The folder torchvision reads and the file names it needs there, taken from the class itself."""
    if hasattr(dataset_class, "resources"):  # MNIST family: ROOT/MNIST/raw/ with the unpacked idx files
        return root / dataset_class.__name__ / "raw", [os.path.splitext(name)[0] for name, _ in dataset_class.resources]
    if hasattr(dataset_class, "base_folder"):  # CIFAR-10: ROOT/cifar-10-batches-py/ with pickled batches
        names = [name for name, _ in dataset_class.train_list + dataset_class.test_list]
        return root / dataset_class.base_folder, names + [dataset_class.meta["filename"]]
    return root, [dataset_class.split_list[part][1] for part in ("train", "test")]  # SVHN: ROOT/*_32x32.mat


def _not_found_message(cfg, dataset_class, root: Path, err: Exception) -> str:
    folder, files = _expected_files(dataset_class, root)
    folder = folder.resolve()
    missing = [name for name in files if not (folder / name).is_file()]
    reason = " ".join(str(err).split())  # MNIST's download error spans lines; the CLI prints one
    if cfg.download:
        return (f"dataset.download=true but {cfg.name} could not be fetched into {folder}: {reason}. "
                f"Check the network, or copy {', '.join(files)} there by hand and set dataset.download=false")
    if missing:
        return (f"dataset={cfg.name}: no data at dataset.root={cfg.root!r}: {folder} lacks {', '.join(missing)}. "
                f"Set dataset.download=true to download them, or point dataset.root at the folder that holds them")
    return (f"dataset={cfg.name}: the files in {folder} failed torchvision's check ({reason}). Delete them and set "
            f"dataset.download=true to download them again")

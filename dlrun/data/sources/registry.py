"""Dataset registry: a name maps to one loader, after torchvision's `register_model`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from dlrun.registry import Registry


@dataclass
class Source:
    """A whole dataset as loaded, before splitting and normalisation."""

    x: np.ndarray  # (N, *in_shape) float32, raw units; images are (N, C, H, W)
    y: np.ndarray  # (N,) int64 class indices, or (N,) float32 regression targets
    task: str  # classification | regression
    class_names: list[str] = field(default_factory=list)  # empty for regression
    description: str = ""
    # loads another file or folder of the same kind with this source's encoding (columns, categories, classes):
    # dataset.val_from / dataset.test_from. None: the dataset does not support bringing your own splits
    load_like: Optional[Callable[[str, str], "Source"]] = None


Loader = Callable[[Any], Source]
DATASETS: Registry[Loader] = Registry("dataset")
register_dataset = DATASETS.register
list_datasets = DATASETS.names
get_loader = DATASETS.get

"""Dataset registry: a name maps to one loader, after torchvision's `register_model`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from dlrun.errors import DlrunError


@dataclass
class Source:
    """A whole dataset as loaded, before splitting and normalisation."""

    x: np.ndarray  # (N, *in_shape) float32, raw units; images are (N, C, H, W)
    y: np.ndarray  # (N,) int64 class indices, or (N,) float32 regression targets
    task: str  # classification | regression
    class_names: list[str] = field(default_factory=list)  # empty for regression
    description: str = ""


Loader = Callable[[Any], Source]
_LOADERS: dict[str, Loader] = {}


def register_dataset(*names: str) -> Callable[[Loader], Loader]:
    """Register a loader under one or more names; a duplicate name is a bug and raises."""

    def wrap(fn: Loader) -> Loader:
        for name in names:
            if name in _LOADERS:
                raise ValueError(f"dataset {name!r} is already registered (by {_LOADERS[name].__qualname__})")
            _LOADERS[name] = fn
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def get_loader(name: str) -> Loader:
    if name not in _LOADERS:
        raise DlrunError(f"unknown dataset {name!r}, expected one of {', '.join(list_datasets())}")
    return _LOADERS[name]

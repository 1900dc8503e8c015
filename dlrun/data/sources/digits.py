"""scikit-learn's handwritten digits: 1797 8x8 grey images, 10 classes. It ships inside scikit-learn."""

from __future__ import annotations

import functools

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset


@functools.lru_cache(maxsize=1)
def _arrays() -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Read once per process (scikit-learn parses a CSV each time: 0.3 s, as long as a default run trains, so a
    sweep's jobs share it). Read-only: a step that wrote into them would change every later job's data."""
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8), pixel values 0..16
    y = bunch.target.astype(np.int64)
    x.setflags(write=False)
    y.setflags(write=False)
    return x, y, tuple(str(c) for c in bunch.target_names)


@register_dataset("digits")
def load_digits(cfg) -> Source:
    x, y, names = _arrays()
    return Source(x=x, y=y, task="classification", class_names=list(names),
                  description="scikit-learn handwritten digits (8x8)")

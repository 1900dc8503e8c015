"""scikit-learn's handwritten digits: 1797 8x8 grey images, 10 classes. It ships inside scikit-learn."""

from __future__ import annotations

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset


@register_dataset("digits")
def load_digits(cfg) -> Source:
    from sklearn.datasets import load_digits as sk_load_digits

    bunch = sk_load_digits()
    x = bunch.images.astype(np.float32)[:, None, :, :]  # (1797, 1, 8, 8), pixel values 0..16
    y = bunch.target.astype(np.int64)
    return Source(x=x, y=y, task="classification", class_names=[str(c) for c in bunch.target_names],
                  description="scikit-learn handwritten digits (8x8)")

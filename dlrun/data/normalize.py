"""Input normalisation with statistics of the training split only (the seed method: mu_train, sigma_train).

Images are normalised per channel; tabular and sequence inputs per feature (each coordinate of the input
vector, so that no feature dominates). A constant feature gets std 1, not a division by zero.
"""

from __future__ import annotations

import numpy as np


def fit_stats(x_train: np.ndarray, per_channel: bool) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the training inputs, shaped to broadcast against one sample (*in_shape)."""
    x = x_train.astype(np.float64)
    if per_channel:  # (N, C, H, W) -> (C, 1, 1)
        mean = x.mean(axis=(0, 2, 3))[:, None, None]
        std = x.std(axis=(0, 2, 3))[:, None, None]
    else:  # (N, *shape) -> shape
        mean = x.mean(axis=0)
        std = x.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    return mean.astype(np.float32), std.astype(np.float32)


def apply(x: np.ndarray, mean: np.ndarray, std: np.ndarray) -> np.ndarray:
    return ((x - mean) / std).astype(np.float32)

"""A distribution shift planted in the test split, so a run reproduces "good on train and validation, bad on test".

`apply_shift` works on the raw test inputs (before normalisation, in the dataset's own units), numpy and scipy only,
deterministic from `cfg.seed`. `cfg.fraction` of the test samples (a seeded choice, the same at every severity, so
severities compare sample by sample) are shifted; the others are untouched. Scales are relative to the training
inputs (`train_x`), so a severity means the same for digits (pixels 0..16) and MNIST (pixels 0..1).

Severity table (`SEVERITY`, index = severity - 1; `SEVERITY_UNITS` says what each number is):

| shift          | 1          | 2        | 3     | 4      | 5     | unit (details in SEVERITY_UNITS)               |
|----------------|------------|----------|-------|--------|-------|------------------------------------------------|
| gaussian_noise | 0.2        | 0.5      | 0.8   | 1.2    | 2.0   | noise std / training inputs' std, then clipped |
| rotation       | 5          | 10       | 20    | 30     | 45    | degrees, +- (seeded sign)                      |
| blur           | 0.04       | 0.07     | 0.1   | 0.13   | 0.18  | sigma / image side (8x8: 0.32..1.44 px)        |
| contrast       | 0.6        | 0.4      | 0.25  | 0.15   | 0.08  | factor on the deviation from the image's mean  |
| occlusion      | 0.15       | 0.25     | 0.375 | 0.5    | 0.625 | square side / image side (8x8: 1..5 px)        |
| feature_scale  | 1.25, 0.25 | 1.5, 0.5 | 2, 1  | 3, 1.5 | 4, 2  | factor, offset in training stds                |
| label_prior    | 2          | 4        | 10    | 30     | 100   | imbalance ratio, most / least frequent class   |

Calibrated on scikit-learn's digits (8x8): severity 1 is subtle, severity 3 clearly hurts. Test accuracy, mean of 4
splits (split.seed 0-3, 60/20/20; unshifted: MLP 0.975, small CNN 0.984), MLP 256-256 / CNN, Adam 1e-3, early
stopping on val_loss, CPU, torch 2.14.1:

| shift          | sev 1       | sev 2       | sev 3       | sev 4       | sev 5       |
|----------------|-------------|-------------|-------------|-------------|-------------|
| gaussian_noise | 0.976/0.983 | 0.947/0.958 | 0.867/0.878 | 0.706/0.685 | 0.447/0.426 |
| rotation       | 0.966/0.978 | 0.934/0.951 | 0.720/0.792 | 0.449/0.557 | 0.212/0.254 |
| blur           | 0.974/0.983 | 0.965/0.971 | 0.928/0.928 | 0.849/0.842 | 0.649/0.626 |
| contrast       | 0.973/0.981 | 0.969/0.964 | 0.959/0.905 | 0.926/0.790 | 0.831/0.522 |
| occlusion      | 0.970/0.980 | 0.949/0.955 | 0.882/0.875 | 0.781/0.745 | 0.640/0.571 |
| feature_scale  | 0.967/0.974 | 0.933/0.948 | 0.855/0.856 | 0.768/0.749 | 0.712/0.699 |

label_prior leaves accuracy about as it was (0.97-0.99): it shows in the class histograms, not in the error. Blur
and occlusion scale with the image side; on 32x32 images blur's severity 1 (sigma 1.3 px) is already stronger than
CIFAR-10-C's strongest Gaussian blur (sigma 1 px), so these levels are tuned for small, low-resolution images.

label_prior keeps the inputs and changes which test samples are kept: a subsample without replacement whose class
shares follow the skew (Cui et al., 2019 use the same geometric "imbalance ratio" for long-tailed CIFAR), as large
as the class counts allow, so the test split shrinks (digits' 360 test samples: 256 at severity 1, 88 at severity 5);
no sample is repeated, which would fake extra evidence. On a small split the rarest classes can round to 0 samples.
"""

from __future__ import annotations

import logging
from typing import Callable

import numpy as np

from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

SEVERITY: dict[str, tuple] = {
    "gaussian_noise": (0.2, 0.5, 0.8, 1.2, 2.0),  # noise std / training std
    "rotation": (5, 10, 20, 30, 45),  # degrees
    "blur": (0.04, 0.07, 0.1, 0.13, 0.18),  # sigma / image side
    "contrast": (0.6, 0.4, 0.25, 0.15, 0.08),  # factor on the deviation from the image mean
    "occlusion": (0.15, 0.25, 0.375, 0.5, 0.625),  # square side / image side
    "feature_scale": ((1.25, 0.25), (1.5, 0.5), (2.0, 1.0), (3.0, 1.5), (4.0, 2.0)),  # (factor, offset in stds)
    "label_prior": (2, 4, 10, 30, 100),  # most / least frequent class
}

SEVERITY_UNITS: dict[str, str] = {
    "gaussian_noise": "noise std, as a multiple of the training inputs' std; clipped to the training range",
    "rotation": "degrees; each image turned by +- this angle (seeded sign)",
    "blur": "Gaussian sigma, as a fraction of the image side",
    "contrast": "factor on each image's deviation from its own mean (1 = unchanged)",
    "occlusion": "side of one square, as a fraction of the image side; filled with the training mean",
    "feature_scale": "(factor, offset): x * factor + offset * the feature's training std, on a seeded half of the "
                     "features",
    "label_prior": "imbalance ratio, most / least frequent class, geometric in between",
}

IMAGE_SHIFTS = ("gaussian_noise", "rotation", "blur", "contrast", "occlusion")  # need x of shape (N, C, H, W)


def apply_shift(x: np.ndarray, y: np.ndarray, cfg, task: str, num_classes: int, train_x: np.ndarray
                ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Shift the raw test split by `cfg` (a ShiftConfig) -> (x_shifted, y_kept, kept_positions).

    x: (N, *in_shape) raw test inputs, y: (N,), train_x: the raw training inputs (their scale sets the severity).
    kept_positions indexes the given arrays: range(N) for every shift except label_prior, which subsamples.
    shift=none returns the given arrays themselves.
    """
    name = cfg.name
    if name == "none":
        return x, y, np.arange(len(x))
    if name not in SEVERITY:
        raise DlrunError(f"shift.name={name!r} is not allowed, expected one of none, {', '.join(SEVERITY)}")
    if not 1 <= cfg.severity <= 5:
        raise DlrunError(f"shift.severity must be in 1..5, got {cfg.severity}")
    if not 0 < cfg.fraction <= 1:
        raise DlrunError(f"shift.fraction must be in (0, 1], got {cfg.fraction}")
    level = SEVERITY[name][cfg.severity - 1]
    rng = np.random.default_rng(cfg.seed)

    if name == "label_prior":  # changes which samples are kept, not the inputs
        if task != "classification":
            raise DlrunError(f"shift.name=label_prior needs a classification task, got {task}; "
                             "for regression try shift=feature_scale")
        kept = _label_prior_positions(y, num_classes, level, cfg.fraction, rng)
        log.info("shift label_prior: kept %d of %d test samples", len(kept), len(y))
        return x[kept], y[kept], kept

    if name in IMAGE_SHIFTS and x.ndim != 4:
        raise DlrunError(f"shift.name={name} needs images of shape (N, C, H, W), got test inputs of shape "
                         f"{x.shape}; for tabular or sequence data try shift=feature_scale or shift=label_prior")
    n_affected = max(1, round(cfg.fraction * len(x))) if len(x) else 0
    affected = np.sort(rng.choice(len(x), size=n_affected, replace=False))  # drawn first: same at every severity
    x_shifted = x.copy()
    x_shifted[affected] = SHIFTS[name](x[affected].astype(np.float64), level, rng, train_x).astype(x.dtype)
    return x_shifted, y, np.arange(len(x))


# ----------------------------------------------------------------------------------------------------------------------
# One function per shift: (x of the affected samples as float64, level, rng, train_x) -> x shifted, same shape.


def _gaussian_noise(x: np.ndarray, level: float, rng: np.random.Generator, train_x: np.ndarray) -> np.ndarray:
    # clipped to the training range, as real pixels saturate (and as ImageNet-C clips to [0, 1])
    noisy = x + level * float(train_x.std()) * rng.standard_normal(x.shape)
    return np.clip(noisy, float(train_x.min()), float(train_x.max()))


def _rotation(x: np.ndarray, level: float, rng: np.random.Generator, train_x: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    # x: (M, C, H, W). A fixed magnitude with a seeded sign, so the severity is the angle, not its upper bound.
    # Two rotate calls (one per sign) instead of one per image; edges replicated ("nearest") rather than filled
    # with a value that may be no pixel value of this dataset.
    clockwise = rng.random(len(x)) < 0.5  # (M,)
    out = np.empty_like(x)
    for sign, rows in ((1, ~clockwise), (-1, clockwise)):
        if rows.any():
            out[rows] = ndimage.rotate(x[rows], sign * level, axes=(3, 2), reshape=False, order=1, mode="nearest")
    return out


def _blur(x: np.ndarray, level: float, rng: np.random.Generator, train_x: np.ndarray) -> np.ndarray:
    from scipy import ndimage

    sigma = level * min(x.shape[2:])  # pixels
    return ndimage.gaussian_filter(x, sigma=(0, 0, sigma, sigma), mode="nearest")  # over H and W only


def _contrast(x: np.ndarray, level: float, rng: np.random.Generator, train_x: np.ndarray) -> np.ndarray:
    # towards each image's own per-channel mean (ImageNet-C's contrast), so the brightness stays
    mean = x.mean(axis=(2, 3), keepdims=True)  # (M, C, 1, 1)
    return mean + level * (x - mean)


def _occlusion(x: np.ndarray, level: float, rng: np.random.Generator, train_x: np.ndarray) -> np.ndarray:
    # one square per image at a seeded position, filled with the training mean per channel (Cutout's fill,
    # DeVries & Taylor, 2017: 0 after normalisation), so the damage is lost information, not a new colour
    m, _, h, w = x.shape
    side = max(1, int(round(level * min(h, w))))
    top = rng.integers(0, h - side + 1, size=m)  # (M,)
    left = rng.integers(0, w - side + 1, size=m)  # (M,)
    rows = np.arange(h)[None, :, None]  # (1, H, 1)
    cols = np.arange(w)[None, None, :]  # (1, 1, W)
    inside = ((rows >= top[:, None, None]) & (rows < top[:, None, None] + side)
              & (cols >= left[:, None, None]) & (cols < left[:, None, None] + side))  # (M, H, W)
    fill = train_x.mean(axis=(0, 2, 3))[None, :, None, None]  # (1, C, 1, 1)
    return np.where(inside[:, None], fill, x)


def _feature_scale(x: np.ndarray, level: tuple[float, float], rng: np.random.Generator, train_x: np.ndarray
                   ) -> np.ndarray:
    # a unit change (factor) and a sensor bias (offset) on a seeded half of the features, any input shape
    factor, offset = level
    flat = x.reshape(len(x), -1)  # (M, D): a feature is one input coordinate, as in normalize.py
    train_std = train_x.reshape(len(train_x), -1).std(axis=0)  # (D,)
    train_std = np.where(train_std < 1e-8, train_x.std(), train_std)  # a constant feature: the data's overall scale
    features = rng.choice(flat.shape[1], size=max(1, flat.shape[1] // 2), replace=False)
    flat = flat.copy()
    flat[:, features] = flat[:, features] * factor + offset * train_std[features]
    return flat.reshape(x.shape)


SHIFTS: dict[str, Callable[..., np.ndarray]] = {
    "gaussian_noise": _gaussian_noise,
    "rotation": _rotation,
    "blur": _blur,
    "contrast": _contrast,
    "occlusion": _occlusion,
    "feature_scale": _feature_scale,
}


def _label_prior_positions(y: np.ndarray, num_classes: int, imbalance: float, fraction: float,
                           rng: np.random.Generator) -> np.ndarray:
    """Sorted positions of a subsample of y without replacement whose class shares follow the skew.

    Target shares: (1 - fraction) * the split's own shares + fraction * a geometric decay over a seeded class
    order, from 1 down to 1 / imbalance. The sample is the largest that the class counts allow.
    """
    counts = np.bincount(y, minlength=num_classes)  # (K,)
    order = rng.permutation(num_classes)  # order[r] is the class of rank r
    skew = np.empty(num_classes)
    skew[order] = imbalance ** (-np.arange(num_classes) / max(1, num_classes - 1))  # (K,) 1 .. 1/imbalance
    skew[counts == 0] = 0  # a class absent from the split cannot be drawn
    target = (1 - fraction) * counts / counts.sum() + fraction * skew / skew.sum()  # (K,) shares, sum to 1
    present = target > 0
    size = np.floor(np.min(counts[present] / target[present]))  # the largest sample the counts allow
    quota = np.minimum(np.round(size * target).astype(np.int64), counts)  # (K,)
    kept = [rng.choice(np.flatnonzero(y == k), size=quota[k], replace=False) for k in range(num_classes)]
    return np.sort(np.concatenate(kept))

"""Train / train-dev / validation / test splits: disjoint, stratified for classification, reproducible."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from dlrun.errors import DlrunError

SPLIT_NAMES = ("train", "train_dev", "val", "test")


@dataclass
class Split:
    """One split as tensors (on the CPU until the engine moves them): x normalised, y as loaded."""

    x: "torch.Tensor"  # (N, *in_shape) float32  # noqa: F821
    y: "torch.Tensor"  # (N,) int64 classes or (N,) float32 targets  # noqa: F821
    index: np.ndarray  # (N,) positions in the loaded dataset, for tracing a sample back

    def __len__(self) -> int:
        return len(self.index)


@dataclass
class Splits:
    train: Split
    val: Split
    test: Split
    train_dev: Optional[Split]
    task: str  # classification | regression
    num_outputs: int  # classes, or 1 for regression
    in_shape: tuple[int, ...]  # one sample's shape, e.g. (1, 8, 8)
    class_names: list[str]
    mean: "torch.Tensor"  # normalisation statistics of the training split  # noqa: F821
    std: "torch.Tensor"  # noqa: F821
    description: str = ""
    target_mean: float = 0.0  # regression: targets are standardised with the training split's mean and std;
    target_scale: float = 1.0  # errors (RMSE) are reported back in the target's own units
    shift: str = "none"  # the distribution shift planted in the test split, if any
    shift_detail: str = ""  # its severity and fraction, and for label_prior how many test samples it kept
    origins: dict = None  # {"val": ..., "test": ...}: "split" (carved from the dataset) or the file it came from

    def items(self) -> list[tuple[str, Split]]:
        """The present splits, in report order."""
        return [(name, getattr(self, name)) for name in SPLIT_NAMES if getattr(self, name) is not None]


def split_indices(y: np.ndarray, train: float, val: float, test: float, train_dev: float,
                  stratify: bool, seed: int, folds: int = 0, fold: int = 0) -> dict[str, np.ndarray]:
    """Partition range(len(y)) into train, train_dev (a fraction of train), val and test index arrays.

    val = 0 or test = 0 leaves that split empty (it comes from another file: dataset.val_from / test_from); the
    other ratios keep their proportions. folds = K > 1: k-fold cross-validation; the test split is carved first and
    stays the same for every fold, and fold i of the rest (scikit-learn's (Stratified)KFold) is the validation split."""
    from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

    n = len(y)
    index = np.arange(n)
    labels = y if stratify else None
    empty = np.array([], dtype=np.int64)
    try:
        rest, test_idx = train_test_split(index, test_size=test, random_state=seed, stratify=labels) if test > 0 \
            else (index, empty)
        rest_labels = y[rest] if stratify else None
        if folds > 1:
            kfold = (StratifiedKFold if stratify else KFold)(n_splits=folds, shuffle=True, random_state=seed)
            train_pos, val_pos = list(kfold.split(rest, rest_labels))[fold]
            train_idx, val_idx = rest[train_pos], rest[val_pos]
        else:
            train_idx, val_idx = train_test_split(rest, test_size=val / (train + val), random_state=seed,
                                                  stratify=rest_labels) if val > 0 else (rest, empty)
        dev_idx = np.array([], dtype=np.int64)
        if train_dev > 0:
            train_labels = y[train_idx] if stratify else None
            train_idx, dev_idx = train_test_split(train_idx, test_size=train_dev, random_state=seed,
                                                  stratify=train_labels)
    except ValueError as err:  # sklearn: too few members of a class, or a split that would be empty
        hint = " (or set split.stratify=false)" if stratify else ""
        kfold_words = f", folds={folds}" if folds > 1 else ""
        raise DlrunError(f"cannot split {n} samples as train={train}, val={val}, test={test}, "
                         f"train_dev={train_dev}{kfold_words}: {err}{hint}") from None
    return {"train": np.sort(train_idx), "train_dev": np.sort(dev_idx), "val": np.sort(val_idx),
            "test": np.sort(test_idx)}


def subsample(y: np.ndarray, max_samples: int, stratify: bool, seed: int) -> np.ndarray:
    """Indices of a (stratified) subset of max_samples samples, for quick experiments."""
    from sklearn.model_selection import train_test_split

    if max_samples >= len(y):
        return np.arange(len(y))
    keep, _ = train_test_split(np.arange(len(y)), train_size=max_samples, random_state=seed,
                               stratify=y if stratify else None)
    return np.sort(keep)

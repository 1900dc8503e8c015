"""Splits are disjoint, sized by the ratios, stratified, reproducible; normalisation uses train only."""

from __future__ import annotations

import numpy as np
import pytest

from dlrun.config import DigitsConfig, SplitConfig
from dlrun.data import load, normalize
from dlrun.data.splits import split_indices
from dlrun.errors import DlrunError


def _labels(n=1000, k=4, seed=0):
    rng = np.random.default_rng(seed)
    return rng.choice(k, size=n, p=[0.55, 0.25, 0.15, 0.05])


def test_splits_are_disjoint_cover_everything_and_follow_the_ratios():
    y = _labels()
    parts = split_indices(y, 0.6, 0.2, 0.2, 0.1, stratify=True, seed=0)
    sets = [set(parts[name]) for name in ("train", "train_dev", "val", "test")]
    for i in range(4):
        for j in range(i + 1, 4):
            assert not sets[i] & sets[j]
    assert set().union(*sets) == set(range(len(y)))
    assert len(parts["test"]) == 200 and len(parts["val"]) == 200
    assert len(parts["train_dev"]) == 60 and len(parts["train"]) == 540  # train_dev is 10% of train


def test_stratification_keeps_class_shares():
    y = _labels()
    parts = split_indices(y, 0.6, 0.2, 0.2, 0.0, stratify=True, seed=1)
    whole = np.bincount(y, minlength=4) / len(y)
    for name in ("train", "val", "test"):
        share = np.bincount(y[parts[name]], minlength=4) / len(parts[name])
        assert np.abs(share - whole).max() < 0.011


def test_split_is_reproducible_from_the_seed():
    y = _labels()
    a = split_indices(y, 0.6, 0.2, 0.2, 0.0, True, seed=3)
    b = split_indices(y, 0.6, 0.2, 0.2, 0.0, True, seed=3)
    c = split_indices(y, 0.6, 0.2, 0.2, 0.0, True, seed=4)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    assert not np.array_equal(a["test"], c["test"])


def test_impossible_stratified_split_is_a_user_error():
    y = np.array([0] * 20 + [1])  # one member of class 1 cannot be in every split
    with pytest.raises(DlrunError, match="split.stratify=false"):
        split_indices(y, 0.6, 0.2, 0.2, 0.0, True, seed=0)


def test_normalisation_statistics_come_from_train_only():
    rng = np.random.default_rng(0)
    x = rng.normal(5.0, 2.0, size=(1000, 3)).astype(np.float32)
    parts = split_indices(np.zeros(1000, dtype=int), 0.6, 0.2, 0.2, 0.0, False, seed=0)
    x[parts["test"][0]] = 1e6  # an outlier in test must not move the statistics
    mean, std = normalize.fit_stats(x[parts["train"]], per_channel=False)
    assert np.allclose(mean, x[parts["train"]].mean(0), rtol=1e-5) and np.all(mean < 6)
    assert np.allclose(std, x[parts["train"]].std(0), rtol=1e-4) and np.all(std < 3)
    z = normalize.apply(x[parts["train"]], mean, std)
    assert np.allclose(z.mean(0), 0, atol=1e-4) and np.allclose(z.std(0), 1, atol=1e-3)


def test_constant_feature_does_not_divide_by_zero():
    x = np.zeros((10, 1, 2, 2), dtype=np.float32)
    mean, std = normalize.fit_stats(x, per_channel=True)
    assert std.shape == (1, 1, 1) and np.all(std == 1.0)


def test_load_digits_end_to_end():
    splits = load(DigitsConfig(), SplitConfig(train_dev=0.1))
    assert splits.in_shape == (1, 8, 8) and splits.num_outputs == 10 and splits.task == "classification"
    sizes = {name: len(s) for name, s in splits.items()}
    assert sum(sizes.values()) == 1797 and set(sizes) == {"train", "train_dev", "val", "test"}
    indexes = [set(s.index.tolist()) for _, s in splits.items()]
    assert sum(len(i) for i in indexes) == len(set().union(*indexes))
    # per-channel statistics of the training split: train is centred, the others only approximately
    assert abs(float(splits.train.x.mean())) < 1e-4 and abs(float(splits.train.x.std()) - 1) < 1e-2
    assert splits.mean.shape == (1, 1, 1)


def test_max_samples_subsamples_before_splitting():
    splits = load(DigitsConfig(max_samples=200), SplitConfig())
    assert sum(len(s) for _, s in splits.items()) == 200

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


def test_normalisation_statistics_come_from_train_only(monkeypatch):
    """Through the real data.load: val and test rows made wildly different must not move the statistics."""
    from dlrun.data.sources import sklearn_sets  # noqa: F401  (registers the loaders)
    from dlrun.data.sources import registry

    load_digits = registry.get_loader("digits")
    parts = split_indices(load_digits(DigitsConfig()).y, 0.6, 0.2, 0.2, 0.0, True, seed=0)
    held_out = np.concatenate([parts["val"], parts["test"]])

    def poisoned(cfg):
        source = load_digits(cfg)
        source.x = source.x.copy()
        source.x[held_out] = 1e6  # if val or test rows reached fit_stats, the mean would be enormous
        return source

    monkeypatch.setitem(registry.DATASETS.items, "digits", poisoned)
    splits = load(DigitsConfig(), SplitConfig())
    train_raw = load_digits(DigitsConfig()).x[splits.train.index]
    assert np.allclose(splits.mean.numpy().ravel(), train_raw.mean(axis=(0, 2, 3)), rtol=1e-5)
    assert float(splits.std.max()) < 100 and float(splits.val.x.min()) > 1e3  # val is far out, train is not


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


def test_the_test_split_never_influences_training():
    """Replace every test input and label by noise: the training history must not change by one bit."""
    import torch

    from dlrun import models
    from dlrun.engine import fit
    from tests.conftest import make_config

    cfg = make_config(trainer={"max_epochs": 3}, reg={"dropout": 0.1})
    histories = []
    for scramble in (False, True):
        splits = load(cfg.dataset, cfg.split)
        if scramble:
            g = torch.Generator().manual_seed(1)
            splits.test.x = torch.randn(splits.test.x.shape, generator=g) * 100
            splits.test.y = splits.test.y[torch.randperm(len(splits.test.y), generator=g)]
        torch.manual_seed(0)
        model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
        histories.append(fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer))
    strip = [[{k: v for k, v in r.items() if k != "epoch_seconds"} for r in h.rows] for h in histories]
    assert strip[0] == strip[1]


def test_k_fold_validation_folds_partition_what_the_test_split_leaves():
    y = np.repeat(np.arange(4), 50)
    parts = [split_indices(y, 0.6, 0.2, 0.2, 0.0, True, seed=3, folds=5, fold=i) for i in range(5)]
    test = parts[0]["test"]
    assert all(np.array_equal(p["test"], test) for p in parts)  # the test split is the same for every fold
    vals = np.concatenate([p["val"] for p in parts])
    assert len(vals) == len(set(vals)) == 200 - len(test)  # each non-test sample validates exactly once
    assert not set(vals) & set(test)
    for p in parts:
        assert not set(p["train"]) & set(p["val"]) and len(p["train"]) + len(p["val"]) + len(test) == 200
        assert np.bincount(y[p["val"]]).tolist() == [8] * 4  # stratified: 32 per fold, 8 per class


def test_k_fold_normalises_with_the_training_folds_only():
    import torch

    cfg = DigitsConfig()
    a = load(cfg, SplitConfig(folds=3, fold=0), None)
    b = load(cfg, SplitConfig(folds=3, fold=1), None)
    assert torch.equal(a.test.y, b.test.y) and not torch.equal(a.val.y, b.val.y)
    assert not torch.allclose(a.mean, b.mean)  # per fold: statistics of that fold's training rows
    from dlrun.data.sources import get_loader

    raw = get_loader("digits")(cfg)
    assert np.allclose(a.mean.numpy().ravel(), raw.x[a.train.index].mean(axis=(0, 2, 3)), rtol=1e-5)

"""Planted test-split shifts on real digits images: what changes, what does not, and that every conf/shift composes."""

from pathlib import Path

import numpy as np
import pytest

from dlrun.config import ShiftConfig
from dlrun.data.shift import IMAGE_SHIFTS, SEVERITY, apply_shift
from dlrun.errors import DlrunError

CONF = Path(__file__).resolve().parents[2] / "conf"
SHIFT_NAMES = ["none", *SEVERITY]


@pytest.fixture(scope="module")
def digits() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(train_x, test_x, test_y): raw pixels 0..16, (N, 1, 8, 8)."""
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = bunch.images.astype(np.float32)[:, None]
    return x[:1000], x[1000:1400], bunch.target[1000:1400].astype(np.int64)


def shift(digits, **fields):
    train_x, x, y = digits
    return apply_shift(x, y, ShiftConfig(**fields), "classification", 10, train_x)


def changed(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(N,) which samples differ."""
    return (a != b).reshape(len(a), -1).any(axis=1)


def test_none_is_the_identity(digits):
    _, x, y = digits
    x_shifted, y_kept, kept = shift(digits, name="none")
    assert x_shifted is x and y_kept is y
    np.testing.assert_array_equal(kept, np.arange(len(x)))


@pytest.mark.parametrize("name", [*IMAGE_SHIFTS, "feature_scale"])
def test_shift_changes_the_chosen_fraction_only(digits, name):
    _, x, y = digits
    x_before = x.copy()
    x_shifted, y_kept, kept = shift(digits, name=name, fraction=0.5)
    assert x_shifted.shape == x.shape and x_shifted.dtype == x.dtype
    assert y_kept is y
    np.testing.assert_array_equal(kept, np.arange(len(x)))
    # every chosen sample changes (a 1-pixel occlusion on a background pixel at the training mean could not, but the
    # training mean is no pixel value of digits); the others are bit-for-bit the same
    assert changed(x_shifted, x).sum() == len(x) // 2
    np.testing.assert_array_equal(x, x_before)  # the input was not modified in place


@pytest.mark.parametrize("name", [*IMAGE_SHIFTS, "feature_scale", "label_prior"])
def test_same_seed_same_shift_other_seed_other_shift(digits, name):
    first, again, other = (shift(digits, name=name, fraction=0.5, seed=seed) for seed in (1, 1, 2))
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a, b)
    assert any(a.shape != b.shape or not np.array_equal(a, b) for a, b in zip(first, other))


@pytest.mark.parametrize("name", [*IMAGE_SHIFTS, "feature_scale"])
def test_damage_grows_with_severity(digits, name):
    _, x, _ = digits
    damage = [np.abs(shift(digits, name=name, severity=s)[0] - x).mean() for s in range(1, 6)]
    assert all(a < b for a, b in zip(damage, damage[1:])), damage
    assert damage[0] > 0


def test_gaussian_noise_stays_in_the_training_range(digits):
    train_x, _, _ = digits
    x_shifted, _, _ = shift(digits, name="gaussian_noise", severity=5)
    assert x_shifted.min() >= train_x.min() and x_shifted.max() <= train_x.max()


def test_contrast_keeps_each_image_mean_and_scales_its_spread(digits):
    _, x, _ = digits
    x_shifted, _, _ = shift(digits, name="contrast", severity=3)
    np.testing.assert_allclose(x_shifted.mean(axis=(1, 2, 3)), x.mean(axis=(1, 2, 3)), rtol=1e-5)
    factor = SEVERITY["contrast"][2]
    np.testing.assert_allclose(x_shifted.std(axis=(1, 2, 3)), factor * x.std(axis=(1, 2, 3)), rtol=1e-5)


def test_label_prior_skews_the_classes_and_keeps_positions(digits):
    _, x, y = digits
    x_kept, y_kept, kept = shift(digits, name="label_prior", severity=3)
    np.testing.assert_array_equal(x_kept, x[kept])
    np.testing.assert_array_equal(y_kept, y[kept])
    assert len(np.unique(kept)) == len(kept)  # without replacement
    assert 0 < len(kept) < len(y)
    before = np.bincount(y, minlength=10)
    assert before.max() / before.min() < 1.5  # digits are about balanced
    # after: geometric shares from 1 down to 1/10 (severity 3), each class count off by at most rounding
    imbalance = SEVERITY["label_prior"][2]
    geometric = imbalance ** (-np.arange(10) / 9)
    expected = len(kept) * geometric / geometric.sum()  # (10,) counts, most frequent first
    after = np.sort(np.bincount(y_kept, minlength=10))[::-1]
    np.testing.assert_allclose(after, expected, atol=1.0)


def test_label_prior_fraction_mixes_the_skew_with_the_split_shares(digits):
    _, y_full, _ = shift(digits, name="label_prior", severity=3, fraction=1.0)
    _, y_half, _ = shift(digits, name="label_prior", severity=3, fraction=0.5)
    top_share = [np.bincount(y, minlength=10).max() / len(y) for y in (y_half, y_full)]
    assert 0.1 < top_share[0] < top_share[1]  # balanced digits: 0.1 per class before


def test_label_prior_skew_grows_with_severity(digits):
    top_share = []
    for severity in range(1, 6):
        _, y_kept, _ = shift(digits, name="label_prior", severity=severity)
        top_share.append(np.bincount(y_kept).max() / len(y_kept))
    assert all(a < b for a, b in zip(top_share, top_share[1:])), top_share


def test_label_prior_on_regression_raises(digits):
    train_x, x, y = digits
    with pytest.raises(DlrunError, match="label_prior.*regression"):
        apply_shift(x, y.astype(np.float32), ShiftConfig(name="label_prior"), "regression", 1, train_x)


@pytest.mark.parametrize("name", IMAGE_SHIFTS)
def test_image_shift_on_tabular_inputs_raises(name):
    x = np.random.default_rng(0).normal(size=(50, 7)).astype(np.float32)
    y = np.zeros(50, dtype=np.int64)
    with pytest.raises(DlrunError, match=rf"shift\.name={name}.*\(50, 7\).*feature_scale"):
        apply_shift(x, y, ShiftConfig(name=name), "classification", 2, x)


def test_feature_scale_works_on_tabular_inputs():
    rng = np.random.default_rng(0)
    train_x = rng.normal(loc=5.0, scale=2.0, size=(500, 8)).astype(np.float32)
    x = rng.normal(loc=5.0, scale=2.0, size=(100, 8)).astype(np.float32)
    x_shifted, _, _ = apply_shift(x, np.zeros(100), ShiftConfig(name="feature_scale", severity=3), "regression", 1,
                                  train_x)
    moved = (x_shifted != x).any(axis=0)  # (8,) features touched
    assert moved.sum() == 4  # a seeded half
    # severity 3: x * 2 + 1 training std
    np.testing.assert_allclose(x_shifted[:, moved], x[:, moved] * 2 + train_x.std(axis=0)[moved], rtol=1e-5)


@pytest.mark.parametrize("name", SHIFT_NAMES)
def test_every_conf_shift_composes(name):
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    from dlrun.config import register_configs

    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose("config", overrides=[f"shift={name}"])
    assert cfg.shift.name == name
    assert OmegaConf.to_object(cfg.shift) == ShiftConfig(name=name)


def test_every_shift_has_a_yaml():
    assert sorted(p.stem for p in (CONF / "shift").glob("*.yaml")) == sorted(SHIFT_NAMES)

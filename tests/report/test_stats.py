"""Known answers for dlrun.report.stats on synthetic arrays: quiet on the null, firing on a planted effect."""

import math

import numpy as np
import pytest

from dlrun.report import stats


# ----------------------------------------------------------------------------------------------------------------------
# error rates


def test_error_interval_zero_of_hundred_matches_wilson_by_hand():
    low, high = stats.error_interval(0, 100)
    z2 = 1.959964 ** 2
    assert low == 0.0
    assert high == pytest.approx(z2 / (100 + z2), rel=1e-5)  # Wilson upper bound at p_hat = 0: z^2 / (n + z^2)
    assert high == pytest.approx(0.037, abs=5e-4)


def test_error_interval_contains_the_rate_and_narrows_with_n():
    low, high = stats.error_interval(10, 100)
    assert low < 0.1 < high
    wide, narrow = high - low, np.subtract(*stats.error_interval(100, 1000)[::-1])
    assert narrow < wide
    assert all(isinstance(bound, float) for bound in (low, high))


def test_error_interval_of_no_samples_is_nan():
    assert all(math.isnan(bound) for bound in stats.error_interval(0, 0))


def test_gap_test_fires_on_a_real_gap_and_not_on_noise():
    gap = stats.gap_test(2, 1000, 60, 1000)
    assert gap.p_value < 1e-6
    assert gap.statistic == pytest.approx(0.058)
    noise = stats.gap_test(20, 1000, 22, 1000)
    assert noise.p_value > 0.05


def test_gap_test_is_one_sided():
    assert stats.gap_test(60, 1000, 2, 1000).p_value > 0.5  # b below a is no evidence that b is above a


def test_mean_interval_covers_the_mean_of_skewed_losses():
    rng = np.random.default_rng(0)
    squared_errors = rng.normal(0, 2.0, 1000) ** 2  # mean 4, chi-square shaped
    low, high = stats.mean_interval(squared_errors)
    assert low < squared_errors.mean() < high
    assert 3.0 < low < 4.0 < high < 5.0
    assert stats.mean_interval(np.zeros(10)) == (0.0, 0.0)
    assert all(math.isnan(bound) for bound in stats.mean_interval(np.array([1.0])))
    assert all(math.isnan(bound) for bound in stats.mean_interval(np.array([1.0, np.inf])))


def test_mean_interval_of_many_samples_is_the_t_interval_that_covers_the_mean():
    # BCa's jackknife is quadratic in n (25 s at 60,000 samples): past BCA_MAX_SAMPLES, Student's t
    from scipy.stats import ttest_1samp

    rng = np.random.default_rng(0)
    losses = rng.exponential(2.0, stats.BCA_MAX_SAMPLES + 1)
    low, high = stats.mean_interval(losses, 0.9)
    t = ttest_1samp(losses, 0.0).confidence_interval(confidence_level=0.9)
    assert (low, high) == (float(t.low), float(t.high))
    assert low < 2.0 < high and high - low < 0.2


def test_mean_gap_test_fires_on_a_gap_and_not_on_noise():
    rng = np.random.default_rng(0)
    train = rng.normal(0, 1.0, 500) ** 2
    gap = stats.mean_gap_test(train, rng.normal(0, 1.5, 500) ** 2)
    assert gap.p_value < 1e-6
    assert gap.statistic > 0.5  # expected 1.25
    assert stats.mean_gap_test(train, rng.normal(0, 1.0, 500) ** 2).p_value > 0.05
    assert stats.mean_gap_test(rng.normal(0, 1.5, 500) ** 2, train).p_value > 0.5  # one-sided


# ----------------------------------------------------------------------------------------------------------------------
# distribution shift


def test_ks_softmax_test_quiet_on_same_dirichlet():
    quiet = 0
    for seed in range(20):
        rng = np.random.default_rng(seed)
        quiet += stats.ks_softmax_test(rng.dirichlet(np.ones(10), 500), rng.dirichlet(np.ones(10), 500)).p_value > 0.05
    assert quiet >= 18


def test_ks_softmax_test_fires_on_shift_and_names_the_class():
    rng = np.random.default_rng(0)
    concentration = np.ones(10)
    shifted = concentration.copy()
    shifted[3] = 3.0  # class 3 gets more probability mass on the new sample
    result = stats.ks_softmax_test(rng.dirichlet(concentration, 500), rng.dirichlet(shifted, 500))
    assert result.p_value < 1e-6
    assert "class 3" in result.detail
    assert 0 < result.statistic <= 1


def test_ks_softmax_test_on_a_collapsed_softmax_gives_the_asymptotic_p_value_without_a_warning():
    import warnings

    # a run that collapsed to one output: two values per column, heavily tied (seen with optim.lr=10), where scipy's
    # exact p-value fails and it warns on the user's terminal before falling back to the asymptotic one
    p_ref = np.tile([[0.0, 1.0]], (360, 1))
    p_ref[:18] = [1.0, 0.0]
    p_new = np.tile([[0.0, 1.0]], (360, 1))
    p_new[:20] = [1.0, 0.0]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        result = stats.ks_softmax_test(p_ref, p_new)
    assert result.statistic == pytest.approx(2 / 360) and result.p_value == pytest.approx(1.0)


def test_mmd_quiet_on_same_gaussians_and_fires_on_a_mean_shift():
    quiet = 0
    for seed in range(10):
        rng = np.random.default_rng(seed)
        quiet += stats.mmd_permutation_test(rng.normal(size=(300, 10)), rng.normal(size=(300, 10)),
                                            seed=seed).p_value > 0.05
    assert quiet >= 8
    rng = np.random.default_rng(0)
    shifted = stats.mmd_permutation_test(rng.normal(size=(300, 10)), rng.normal(0.5, 1.0, size=(300, 10)))
    assert shifted.p_value < 0.01
    assert shifted.p_value >= 1 / 201  # the +1 correction: never zero


def test_mmd_subsamples_large_inputs():
    rng = np.random.default_rng(0)
    result = stats.mmd_permutation_test(rng.normal(size=(3000, 256)), rng.normal(size=(2000, 256)), max_samples=400)
    assert "400 vs 400" in result.detail


def test_label_shift_test_fires_on_a_skewed_histogram_and_drops_absent_classes():
    rng = np.random.default_rng(0)
    ref = rng.integers(0, 5, 1000)  # classes 5 and 6 never predicted: dropped, not a division by zero
    same = stats.label_shift_test(ref, rng.integers(0, 5, 1000), num_classes=7)
    assert same.p_value > 0.05
    skewed = np.concatenate([rng.integers(0, 5, 600), np.full(400, 2)])
    result = stats.label_shift_test(ref, skewed, num_classes=7)
    assert result.p_value < 1e-6
    assert "class 2" in result.detail
    assert "dof=4" in result.detail
    # each share with its Wilson interval: class 2 is 1 in 5 of ref, 52% of skewed
    import re

    shares = re.search(r"predicted class 2: (\d+\.\d)% \[(\d+\.\d), (\d+\.\d)\] -> (\d+\.\d)% \[(\d+\.\d), "
                       r"(\d+\.\d)\] \(95% intervals\)", result.detail)
    assert shares, result.detail
    ref_share, low, high, new_share, new_low, new_high = map(float, shares.groups())
    assert low < ref_share < high < new_low < new_share < new_high


# ----------------------------------------------------------------------------------------------------------------------
# per-class views and baselines


def test_per_class_error_and_class_shares():
    errors = stats.per_class_error(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 0]), num_classes=4)
    np.testing.assert_allclose(errors, [0.5, 0.0, 1.0, np.nan])
    np.testing.assert_allclose(stats.class_shares(np.array([0, 0, 1, 0]), 3), [0.75, 0.25, 0.0])


def test_chance_error():
    y = np.array([0] * 70 + [1] * 30)
    assert stats.chance_error(y, y, "classification") == pytest.approx(0.3)
    y_train = np.array([1.0, 2.0, 3.0])
    assert stats.chance_error(y_train, np.array([2.0, 4.0]), "regression") == pytest.approx(math.sqrt(2.0))
    with pytest.raises(ValueError, match="expected one of"):
        stats.chance_error(y, y, "sequence")


def test_simple_baseline_error_separable_vs_random_labels():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 2, 5))  # (n, ...) is flattened to (n, 10)
    y = (x[:, 0, 0] + x[:, 1, 2] > 0).astype(int)
    assert stats.simple_baseline_error(x[:400], y[:400], x[400:], y[400:], "classification") < 0.05
    y_random = rng.integers(0, 2, 600)
    error = stats.simple_baseline_error(x[:400], y_random[:400], x[400:], y_random[400:], "classification")
    assert error > 0.35  # chance is ~0.5


def test_simple_baseline_error_regression_is_rmse_of_the_noise():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(1000, 4))
    y = x @ np.array([1.0, -2.0, 0.5, 0.0]) + rng.normal(0, 0.1, 1000)
    assert stats.simple_baseline_error(x[:800], y[:800], x[800:], y[800:], "regression") == pytest.approx(0.1, abs=0.02)


def test_simple_baseline_error_on_digits():
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    error = stats.simple_baseline_error(x[:1078], y[:1078], x[1078:], y[1078:], "classification", max_train=500)
    assert error < 0.15


# ----------------------------------------------------------------------------------------------------------------------
# learning curves

EPOCHS = np.arange(30)


@pytest.mark.parametrize("name, values, expected", [
    ("exponential decay", 2.0 * np.exp(-0.1 * EPOCHS) + 0.1, "falling"),
    ("plateau", 2.0 * np.exp(-0.5 * EPOCHS) + 0.3, "converged"),
    ("fell then rose", np.concatenate([np.linspace(2, 1, 15), np.linspace(1.05, 1.5, 15)]), "converged"),
    ("constant", np.full(30, 2.3026), "flat"),
    ("nearly constant", 2.3026 - 0.001 * EPOCHS / 30, "flat"),
    ("nan tail", np.concatenate([np.linspace(2, 1, 10), [np.nan, np.nan]]), "diverged"),
    ("blow-up", np.concatenate([np.linspace(2, 1, 10), [8.0, 40.0]]), "diverged"),
    ("zigzag", 1.0 + 0.3 * (-1.0) ** EPOCHS, "oscillating"),
    ("single epoch", np.array([2.3]), "short"),
])
def test_curve_trend(name, values, expected):
    assert stats.curve_trend(values) == expected


def test_curve_trend_small_noise_on_a_plateau_is_not_oscillating():
    rng = np.random.default_rng(0)
    values = 0.5 + np.exp(-EPOCHS) + 0.003 * rng.normal(size=30)
    assert stats.curve_trend(values) == "converged"


# a ResNet with SGD on digits (a real run): the loss fell from 0.84 to about 1e-4 and jitters there, by as much as
# its own level but by a ten-thousandth of the way it came; converged, not a learning rate to lower
CONVERGED_JITTER = [0.83748, 0.11022, 0.07903, 0.05448, 0.01728, 0.00947, 0.00835, 0.00183, 0.0009, 0.00174, 0.00433,
                    0.00597, 0.00225, 0.00388, 0.00306, 0.0073, 0.00353, 0.00855, 0.00064, 0.00301, 0.00145, 0.00054,
                    0.00118, 0.00063, 0.00082, 0.00022, 0.00024, 0.00018, 0.00011, 0.0001, 8e-05, 6e-05, 8e-05,
                    0.00014, 5e-05, 0.00011, 0.0001, 8e-05, 0.0001, 0.0001, 9e-05, 0.00016, 0.00012, 6e-05, 9e-05,
                    0.00018, 7e-05, 7e-05, 6e-05, 0.0001]


def test_a_loss_that_converged_near_zero_and_jitters_there_is_not_oscillating():
    assert stats.curve_trend(CONVERGED_JITTER) == "converged"
    jitter = list(CONVERGED_JITTER[:40]) + [1e-4, 2e-4] * 5  # a perfect zigzag at its level, as the rule once read
    zigzag = stats.oscillation(jitter)
    assert zigzag["flips"] == 1.0 and zigzag["of_level"] > 0.5  # at its own level: 67% steps
    assert zigzag["of_range"] < 1e-3 and not zigzag["oscillating"]  # against the way it came: nothing
    assert stats.curve_trend(jitter) == "converged"
    instability = list(CONVERGED_JITTER[:40]) + [0.01, 0.06] * 5  # the same run bouncing by 6% of its range
    assert stats.oscillation(instability)["oscillating"] and stats.curve_trend(instability) == "oscillating"


def test_curve_trend_overfit_rise_is_not_divergence():
    values = np.concatenate([np.linspace(2.3, 0.05, 10), np.linspace(0.1, 0.8, 10)])  # 16x its minimum, below start
    assert stats.curve_trend(values) != "diverged"


def test_u_curve_finds_the_rise_after_a_planted_minimum():
    val_loss = np.concatenate([np.linspace(2, 1, 10), np.linspace(1.05, 1.5, 10)])  # minimum at epoch 10
    train_loss = np.linspace(2, 0.1, 20)
    result = stats.u_curve(val_loss, best_epoch=10, train_loss=train_loss)
    assert result["epochs_after_best"] == 10
    assert result["relative_rise"] == pytest.approx(0.5)
    assert result["rising"] is True and result["rise_p"] < 0.001
    assert result["gap_growing"] is True
    assert result["gap_slope"] > 0
    assert stats.u_curve(val_loss, best_epoch=0)["best_epoch"] == 10  # 0: found from the curve


def test_u_curve_does_not_call_noise_after_a_minimum_a_rise():
    """A flat validation loss that jitters by a few percent has a minimum, and its last epoch is usually above it:
    the rise (and a growing gap beside a flat training loss) is claimed only when a line fitted to the epochs after
    the minimum climbs with a one-sided p < 0.05, in about 5% of such curves (the best epoch is left out of the fit:
    it was chosen as the lowest, so every curve would climb away from it)."""
    rng = np.random.default_rng(0)
    rising = growing = 0
    for _ in range(400):
        val_loss = 1 + 0.05 * rng.standard_normal(30)
        result = stats.u_curve(val_loss, best_epoch=0, train_loss=np.full(30, 0.5))
        big = result["epochs_after_best"] >= 3 and result["relative_rise"] > 0.05
        rising += result["rising"]
        growing += result["gap_growing"]
        assert not result["rising"] or big
    assert rising <= 0.09 * 400 and growing <= 0.09 * 400  # 5% expected; 0.09 x 400 is 4 sd above 20
    short = stats.u_curve(np.array([1.0, 0.5, 0.9, 1.2]), best_epoch=2, train_loss=np.zeros(4))
    assert not short["rising"] and not short["gap_growing"]  # two epochs after the best are too few to judge


def test_u_curve_no_rise_and_shrinking_gap():
    val_loss = np.linspace(2, 1, 10)
    result = stats.u_curve(val_loss, best_epoch=10, train_loss=np.linspace(1.5, 1, 10))
    assert result["epochs_after_best"] == 0
    assert result["relative_rise"] == 0.0
    assert result["gap_growing"] is False
    result = stats.u_curve(val_loss, best_epoch=5, train_loss=np.full(10, 0.2))
    assert result["gap_growing"] is False  # val keeps falling towards a flat train loss: the gap shrinks


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, dlrun.report.stats; print(sorted({'scipy', 'sklearn', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # scipy and sklearn load on first use, so `dlrun --help` stays fast


def test_the_linear_baseline_is_scored_on_the_rows_it_was_fitted_on():
    """Past max_train rows the rest of the training split is held-out data for the baseline: its training error
    must come from the fitted rows only (a memorising linear model: 0% there, chance on the rows it never saw)."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 80))
    y = rng.integers(0, 2, 600)  # random labels: 80 features memorise 60 rows, and nothing generalises
    errors = stats.simple_baseline_errors(x, y, {"all_train": (x, y)}, "classification", max_train=60)
    assert errors["fitted"] == 0.0
    assert errors["all_train"] > 0.35  # scoring all 600 rows would have hidden underfitting on large data


@pytest.mark.parametrize("errors_a,n_a,n_b", [(0, 360, 360), (36, 360, 360), (10, 2000, 500), (3, 20, 20)])
def test_smallest_confirmable_diff_is_the_edge_of_the_gate(errors_a, n_a, n_b):
    tol, confidence = 0.05, 0.95
    d = stats.smallest_confirmable_diff(errors_a, n_a, n_b, tol, confidence)
    k = round((errors_a / n_a + d) * n_b)  # the count of errors in b at that gap
    assert stats.rate_diff_interval(errors_a, n_a, k, n_b, confidence)[0] > tol
    assert stats.rate_diff_interval(errors_a, n_a, k - 1, n_b, confidence)[0] <= tol
    # larger samples confirm smaller gaps, and a gap is never confirmed below the tolerance
    assert tol < d and stats.smallest_confirmable_diff(errors_a * 10, n_a * 10, n_b * 10, tol, confidence) < d


def test_smallest_confirmable_diff_is_nan_when_no_gap_can_be_confirmed():
    assert math.isnan(stats.smallest_confirmable_diff(4, 5, 5, 0.05))  # 80% -> 100% cannot clear 5 points on 5 rows


# ----------------------------------------------------------------------------------------------------------------------
# two models on the same samples (dlrun-iterate)


def test_paired_difference_of_a_model_that_fixes_twenty_errors_and_breaks_none():
    y = np.arange(360) % 10
    before, after = y.copy(), y.copy()
    before[:40] = (y[:40] + 1) % 10  # 40 wrong
    after[:20] = (y[:20] + 1) % 10  # 20 of them still wrong, no new error
    result = stats.paired_error_difference("classification", y, before, after)
    assert result["difference"] == pytest.approx(-20 / 360) and result["discordant"] == 20
    low, high = result["interval"]  # Newcombe's paired interval: around the difference, short of 0
    assert -40 / 360 < low < -20 / 360 < high < 0
    assert result["confirmed"] == "lower"
    swapped = stats.paired_error_difference("classification", y, after, before)
    assert swapped["confirmed"] == "higher" and swapped["difference"] == pytest.approx(20 / 360)


def test_paired_difference_of_two_equally_good_models_is_within_noise_at_most_alpha_of_the_time():
    # two models with the same 10% error rate, their errors independent: "confirmed" is a false positive; over 1000
    # pairs it must stay near 5% (two-sided 95% interval; exact intervals are conservative), never 10%
    rng = np.random.default_rng(0)
    y = np.zeros(360, dtype=int)
    confirmed = sum(stats.paired_error_difference("classification", y, (rng.random(360) < 0.1).astype(int),
                                                  (rng.random(360) < 0.1).astype(int))["confirmed"] is not None
                    for _ in range(1000))
    assert confirmed <= 65  # 5% of 1000 is 50; a doubled rate (100) fails


def test_paired_difference_in_regression_is_the_rmse_difference_with_a_bootstrap_interval():
    rng = np.random.default_rng(1)
    y = rng.normal(size=400)
    worse, better = y + 0.5 * rng.normal(size=400), y + 0.3 * rng.normal(size=400)
    result = stats.paired_error_difference("regression", y, worse, better)
    rmse = lambda p: np.sqrt(np.mean((p - y) ** 2))  # noqa: E731
    assert result["difference"] == pytest.approx(rmse(better) - rmse(worse))
    assert result["interval"][0] < result["difference"] < result["interval"][1] < 0 and result["confirmed"] == "lower"
    same = stats.paired_error_difference("regression", y, worse, worse + 1e-3 * rng.normal(size=400))
    assert same["confirmed"] is None and same["interval"][0] < 0 < same["interval"][1]


def test_the_linear_baseline_is_measured_on_train_dev_when_the_run_has_one():
    """Its train-dev error tells memorising from mismatch (diagnosis._linear_held_out); kept in memory, the
    predictions, and in report.json, the error and its count."""
    from dlrun import data
    from dlrun.report.baselines import IN_MEMORY, baselines_for
    from tests.conftest import make_config

    cfg = make_config(split={"train_dev": 0.2})
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    base = baselines_for(splits)
    dev_y = splits.train_dev.y.numpy()
    assert base["simple_train_dev_n"] == len(dev_y) > 0
    assert base["simple_train_dev_error"] == pytest.approx(np.mean(base["simple_train_dev_pred"] != dev_y))
    assert "simple_train_dev_pred" in IN_MEMORY and "simple_train_dev_error" not in IN_MEMORY
    assert "simple_train_dev_error" not in baselines_for(data.load(make_config().dataset, make_config().split,
                                                                  make_config().shift))

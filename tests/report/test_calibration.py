"""The verdicts' false-positive rates, measured on simulated runs (no training, so enough seeds fit in CI).

A verdict's false positive is a finding on a run where the true gap is at most the tolerance. The worst healthy
case is a true gap exactly equal to the tolerance: the one rule (the gap's one-sided lower confidence bound must
exceed the tolerance) must fire there at most alpha of the time (distribution shift: alpha/2 for its error gap,
alpha/2 for the label-free family). Each test counts the firings over N seeds and passes when the count is at most
k, with N and k chosen so that a correct rule passes with probability >= 0.99 (no flaky CI) and a rule whose rate is
twice the allowed one fails with probability >= 0.9 (binomial, computed and asserted in the test itself).
benchmarks/calibrate_diagnosis.py measures the same on real training runs.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import binom

from dlrun.config import ReportConfig
from dlrun.engine.loop import Evaluation, History, SplitEvaluation
from dlrun.report import diagnose, evidence

pytestmark = pytest.mark.slow

K = 10
ALPHA, TOL = 0.05, 0.05
MODEL = {"family": "mlp", "hidden": [64], "activation": "relu", "weights": None, "freeze": "none", "init": "default",
         "init_bias": None}
SETTINGS = {"model": MODEL, "reg": {}, "optim": {"lr": 1e-3, "name": "adam"},
            "trainer": {"max_epochs": 20}}


def _threshold(n: int, rate: float) -> int:
    """The largest count that passes; asserts the test's two error rates (see the module docstring)."""
    k = int(binom.ppf(0.99, n, rate))
    assert binom.cdf(k, n, rate) >= 0.99  # a rule at the allowed rate passes
    assert 1 - binom.cdf(k, n, 2 * rate) >= 0.9, (n, rate, k)  # a rule at twice the rate fails
    return k


def _split(rng, n: int, error: float, features: int = 100, feature_shift: float = 0.0) -> SplitEvaluation:
    y = rng.integers(0, K, n)
    wrong = rng.random(n) < error
    pred = np.where(wrong, (y + rng.integers(1, K, n)) % K, y)  # a wrong answer is any other class
    logits = rng.normal(0, 1, (n, K)) + 3 * np.eye(K)[pred]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    return SplitEvaluation(loss=0.3, error=float(wrong.mean()), n=n, y_true=y, y_pred=pred,
                           sample_loss=wrong.astype(float), probs=probs,
                           features=rng.normal(feature_shift, 1, (min(n, features), 8)))


def _history() -> History:
    val = np.linspace(1.0, 0.3, 15)
    rows = [{"epoch": i + 1, "train_loss": v - 0.05, "val_loss": v, "train_error": 0.0, "val_error": 0.0, "lr": 1e-3,
             "epoch_seconds": 0.01} for i, v in enumerate(val)]
    return History(rows=rows, best_epoch=15, stop_reason="max_epochs", wall_seconds=1.0, device="cpu", precision="32")


def _diagnose(splits: dict, target_error=None):
    base = {"chance_error": 0.9, "simple_train_error": None, "simple_val_error": 0.5, "target_scale": 1.0}
    return diagnose(_history(), Evaluation("classification", splits), ReportConfig(alpha=ALPHA, tolerance=TOL,
                                                                                   target_error=target_error),
                    [], SETTINGS, baselines=base, class_names=[str(i) for i in range(K)])


def test_each_gap_verdict_fires_at_most_alpha_at_the_tolerance():
    # one simulated run per seed holds three boundary cases at once: train error = target + tol (underfitting),
    # validation = train + tol (overfitting), test = validation + tol (the shift's error gap, judged at alpha/2)
    n_seeds = 1200  # enough for alpha/2 too: a rule at 2 x 2.5% fails with probability > 0.9
    fired = {"underfitting": 0, "overfitting": 0, "distribution_shift": 0}
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        splits = {"train": _split(rng, 1500, 0.10), "val": _split(rng, 600, 0.15), "test": _split(rng, 600, 0.20)}
        d = _diagnose(splits, target_error=0.05)
        for name in fired:
            fired[name] += getattr(d, name).detected
    limits = {"underfitting": _threshold(n_seeds, ALPHA), "overfitting": _threshold(n_seeds, ALPHA),
              "distribution_shift": _threshold(n_seeds, ALPHA / 2)}
    assert all(fired[name] <= limits[name] for name in fired), (fired, limits)


def test_the_label_free_family_fires_at_most_half_alpha_on_identical_distributions():
    n_seeds = 1000
    fired = 0
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        val, test = _split(rng, 300, 0.1), _split(rng, 300, 0.1)
        tests = evidence.shift_tests(val, test, "classification", K, ALPHA / 2, seed=seed)
        fired += any(t["fires"] for t in tests.values())
    assert fired <= _threshold(n_seeds, ALPHA / 2), fired


def test_a_clear_shift_is_detected_in_at_least_95_percent_of_seeds():
    detected = 0
    for seed in range(100):
        rng = np.random.default_rng(seed)
        splits = {"train": _split(rng, 1500, 0.05), "val": _split(rng, 600, 0.05),
                  "test": _split(rng, 600, 0.20, feature_shift=0.5)}
        d = _diagnose(splits)
        detected += d.distribution_shift.detected and "mmd_features" in d.distribution_shift.stats["tests_fired"]
    assert detected >= 95


@pytest.mark.parametrize("both_ways", [False, True], ids=["one-way", "two-way"])
def test_a_paired_gap_between_two_models_fires_at_most_alpha_at_the_tolerance(both_ways):
    """stats.paired_error_difference gates the underfitting verdict against a linear model fitted on the training
    rows and the note that a linear model does better: at a true gap equal to the tolerance, its one-sided lower
    bound exceeds the tolerance at most alpha of the time. McNemar's interval, conditional on the number of
    discordant samples, fired 22% of the time here when every discordant sample went one way."""
    from dlrun.report import stats

    n_seeds, n = 400, 800
    fired = 0
    for seed in range(n_seeds):
        rng = np.random.default_rng(seed)
        y = rng.integers(0, K, n)
        hard = rng.random(n) < 0.08  # the linear model's errors
        if both_ways:  # the network gets a quarter of them right and errs elsewhere: 0.06 + 0.92 e = 0.13
            net_wrong = (hard & (rng.random(n) < 0.75)) | (~hard & (rng.random(n) < 0.07 / 0.92))
        else:  # the network errs where the linear model does, and on 5 points more
            net_wrong = hard | (rng.random(n) < 0.05 / 0.92)
        linear, net = np.where(hard, (y + 1) % K, y), np.where(net_wrong, (y + 1) % K, y)
        low, _ = stats.paired_error_difference("classification", y, linear, net, confidence=1 - 2 * ALPHA)["interval"]
        fired += low > TOL
    assert fired <= _threshold(n_seeds, ALPHA), fired

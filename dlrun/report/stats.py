"""Statistics behind the diagnosis: error intervals, gap and shift tests, baselines, learning-curve shapes.

Pure functions over numpy arrays (no torch, no files), so each is tested on hand-made arrays. Errors and rates are
fractions in [0, 1], never percent. scipy and scikit-learn do the statistics and are imported where used, so that
`dlrun --help` stays fast. Tests return a `TestResult`; everything else returns plain Python floats, ints, strings.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

TASKS = ("classification", "regression")

# learning-curve shapes (curve_trend); every threshold is relative to the curve's own scale, so they hold for a
# cross-entropy near 2.3 and a regression MSE near 0.01 alike
DIVERGED_FACTOR = 10.0  # diverged: non-finite, or last > 10x the minimum and above the first epoch (curve_trend)
OSCILLATION_FLIP_FRACTION = 0.7  # oscillating: successive differences flip sign this often (i.i.d. noise: ~2/3)...
OSCILLATION_AMPLITUDE = 0.05  # ...and the mean |step| is >= 5% of the mean level (1% noise is not a zigzag) and
# >= 5% of the range the whole curve covered (a loss that fell from 0.8 to 1e-4 and jitters by 1e-4 has converged)
FALLING_REL_DROP = 0.01  # falling: the fitted line over the last `window` epochs drops > 1% of the level...
FALLING_P_VALUE = 0.05  # ...and its slope is negative at this one-sided significance (linregress)
FLAT_REL_CHANGE = 0.03  # flat: no epoch strays more than 3% from the first one
U_MIN_EPOCHS = 3  # u_curve: a rise after the best epoch is judged on at least 3 epochs after it...
U_RISE = 0.05  # ...by more than 5% of the best level, with FALLING_P_VALUE's one-sided trend test
CURVE_TRENDS = ("falling", "flat", "converged", "oscillating", "diverged", "short")


@dataclass(frozen=True)
class TestResult:
    """A hypothesis test: the statistic (its meaning is in each function's docstring), p-value, one readable line."""

    __test__ = False  # not a pytest test class, despite the name

    statistic: float
    p_value: float
    detail: str


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"unknown task {task!r}, expected one of {TASKS}")


# ----------------------------------------------------------------------------------------------------------------------
# error rates


def error_interval(errors: int, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson interval (fractions) of the error rate errors / n; (nan, nan) when n = 0."""
    from scipy.stats import binomtest

    if n == 0:
        return (math.nan, math.nan)
    ci = binomtest(int(errors), int(n)).proportion_ci(confidence_level=confidence, method="wilson")
    return (float(ci.low), float(ci.high))


def gap_test(errors_a: int, n_a: int, errors_b: int, n_b: int) -> TestResult:
    """One-sided Fisher exact test that error rate b (e.g. validation) exceeds rate a (e.g. training).

    statistic: rate_b - rate_a (fraction). Fisher's test is exact for small counts and rates near 0 and takes well
    under a millisecond at n = 20,000; Boschloo's is more powerful but took 7 s per call at n = 1,000 (scipy 1.17).
    """
    from scipy.stats import fisher_exact

    if n_a == 0 or n_b == 0:
        return TestResult(math.nan, math.nan, f"no samples (n_a={n_a}, n_b={n_b})")
    rate_a, rate_b = errors_a / n_a, errors_b / n_b
    table = [[errors_b, n_b - errors_b], [errors_a, n_a - errors_a]]  # rows: b, a; columns: wrong, right
    p_value = float(fisher_exact(table, alternative="greater").pvalue)
    detail = f"{rate_b:.2%} ({errors_b}/{n_b}) vs {rate_a:.2%} ({errors_a}/{n_a}), one-sided Fisher p={p_value:.2g}"
    return TestResult(float(rate_b - rate_a), p_value, detail)


def rate_diff_interval(errors_a: int, n_a: int, errors_b: int, n_b: int,
                       confidence: float = 0.95) -> tuple[float, float]:
    """Interval of rate_b - rate_a for two independent samples (Newcombe's hybrid score interval, built on Wilson's;
    Newcombe, Stat. Med. 1998, method 10), by statsmodels. Good at small counts and rates near 0 or 1."""
    from statsmodels.stats.proportion import confint_proportions_2indep

    if n_a == 0 or n_b == 0:
        return (math.nan, math.nan)
    low, high = confint_proportions_2indep(int(errors_b), int(n_b), int(errors_a), int(n_a), method="newcomb",
                                           compare="diff", alpha=1 - confidence)
    return (float(low), float(high))


def paired_rate_diff_interval(wrong_a: np.ndarray, wrong_b: np.ndarray,
                              confidence: float = 0.95) -> tuple[float, float]:
    """Interval of rate_b - rate_a for two error indicators (n,) of the same samples: Newcombe's hybrid score
    interval for paired data (Stat. Med. 1998, 17:2635, method 10), the paired twin of rate_diff_interval: each
    rate's Wilson interval, combined with the correlation of the two indicators. McNemar's exact interval, read as
    an interval of the difference, conditions on the number of discordant samples: at a true gap equal to a
    tolerance it confirmed the gap above it in 17% of the simulated runs at a level of 5% when every discordant
    sample went one way (tests/report/test_calibration.py); a bootstrap of the mean difference confirms 3 discordant
    samples out of 300 as a difference. No library has it (statsmodels has the independent one and McNemar's test)."""
    a, b = np.asarray(wrong_a, dtype=bool).ravel(), np.asarray(wrong_b, dtype=bool).ravel()
    n = len(a)
    if n == 0:
        return (math.nan, math.nan)
    count_a, count_b = int(a.sum()), int(b.sum())
    p_a, p_b = count_a / n, count_b / n
    low_a, high_a = error_interval(count_a, n, confidence)
    low_b, high_b = error_interval(count_b, n, confidence)
    both, neither = int(np.sum(a & b)), int(np.sum(~a & ~b))
    only_a, only_b = count_a - both, count_b - both
    denominator = math.sqrt(float(count_a) * (n - count_a) * count_b * (n - count_b))
    phi = (both * neither - only_a * only_b) / denominator if denominator > 0 else 0.0
    down = (p_b - low_b) ** 2 - 2 * phi * (p_b - low_b) * (high_a - p_a) + (high_a - p_a) ** 2
    up = (high_b - p_b) ** 2 - 2 * phi * (high_b - p_b) * (p_a - low_a) + (p_a - low_a) ** 2
    return (p_b - p_a - math.sqrt(max(down, 0.0)), p_b - p_a + math.sqrt(max(up, 0.0)))


def confirmed_direction(low: float, high: float) -> Optional[str]:
    """"lower" or "higher" when a difference's interval excludes 0, else None (within noise)."""
    return "lower" if high < 0 else "higher" if low > 0 else None


def paired_error_difference(task: str, y_true: np.ndarray, pred_a: np.ndarray, pred_b: np.ndarray,
                            confidence: float = 0.95, seed: int = 0) -> dict:
    """error(b) - error(a) of two models' predictions pred_a, pred_b (n,) of the same samples y_true (n,), with its
    two-sided `confidence` interval: a paired comparison, which sees a difference that two separate intervals hide.

    classification: error rates, Newcombe's paired interval (paired_rate_diff_interval); `discordant` counts the
    samples one model gets right and the other wrong. regression: RMSE(b) - RMSE(a) in the target's units, a
    percentile bootstrap over the samples (scipy.stats.bootstrap, paired, 2000 resamples, seeded).
    Returns difference, interval [low, high], n, discordant (classification), and `confirmed`: "lower" or "higher"
    when the interval excludes 0, else None (the difference is within noise)."""
    y_true, pred_a, pred_b = (np.asarray(v).ravel() for v in (y_true, pred_a, pred_b))
    n = len(y_true)
    if n == 0:
        return {"difference": math.nan, "interval": [math.nan, math.nan], "n": 0, "confirmed": None}
    if task == "classification":
        wrong_a, wrong_b = pred_a != y_true, pred_b != y_true
        difference = float(wrong_b.mean() - wrong_a.mean())
        low, high = paired_rate_diff_interval(wrong_a, wrong_b, confidence)
        extra = {"discordant": int(np.sum(wrong_a != wrong_b))}
    else:
        from scipy.stats import bootstrap

        sq_a, sq_b = (pred_a - y_true) ** 2, (pred_b - y_true) ** 2
        difference = float(np.sqrt(sq_b.mean()) - np.sqrt(sq_a.mean()))
        if n < 2 or not np.isfinite(difference):
            low = high = math.nan
        else:
            boot = bootstrap((sq_a, sq_b), lambda a, b, axis: np.sqrt(b.mean(axis)) - np.sqrt(a.mean(axis)),
                             paired=True, vectorized=True, n_resamples=2000, confidence_level=confidence,
                             method="percentile", rng=np.random.default_rng(seed))
            low, high = float(boot.confidence_interval.low), float(boot.confidence_interval.high)
        extra = {}
    confirmed = confirmed_direction(low, high)
    return {"difference": float(difference), "interval": [float(low), float(high)], "n": n, **extra,
            "confirmed": confirmed}


def smallest_confirmable_diff(errors_a: int, n_a: int, n_b: int, tolerance: float,
                              confidence: float = 0.95) -> float:
    """The smallest observed rate_b - rate_a whose Newcombe lower bound (two-sided `confidence`) exceeds `tolerance`,
    with rate_a = errors_a / n_a fixed: the gap these sample sizes can confirm at all. nan if none can.
    The lower bound grows with errors_b, so a bisection over the count finds it."""
    if n_a == 0 or n_b == 0:
        return math.nan

    def confirms(k: int) -> bool:
        return rate_diff_interval(errors_a, n_a, k, n_b, confidence)[0] > tolerance

    low, high = math.floor(errors_a / n_a * n_b), n_b  # confirms(low) is False: the observed gap there is <= 0
    if not confirms(high):
        return math.nan
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if confirms(mid) else (mid, high)
    return high / n_b - errors_a / n_a


def rmse_diff_interval(sq_a: np.ndarray, sq_b: np.ndarray, confidence: float = 0.95, n_resamples: int = 1000,
                       seed: int = 0) -> tuple[float, float]:
    """Percentile bootstrap interval of RMSE_b - RMSE_a from per-sample squared errors sq_a (n,) and sq_b (m,),
    resampled independently (scipy.stats.bootstrap)."""
    from scipy.stats import bootstrap

    a, b = np.asarray(sq_a, dtype=np.float64).ravel(), np.asarray(sq_b, dtype=np.float64).ravel()
    if len(a) < 2 or len(b) < 2 or not (np.isfinite(a).all() and np.isfinite(b).all()):
        return (math.nan, math.nan)

    def rmse_diff(a, b, axis=-1):
        return np.sqrt(np.mean(b, axis=axis)) - np.sqrt(np.mean(a, axis=axis))

    result = bootstrap((a, b), rmse_diff, vectorized=True, confidence_level=confidence, n_resamples=n_resamples,
                       batch=200, method="percentile", rng=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


BCA_MAX_SAMPLES = 2000  # BCa's jackknife costs n^2: 0.38 s at 5000 samples, 25 s at 60,000


def mean_interval(values: np.ndarray, confidence: float = 0.95, n_resamples: int = 2000,
                  seed: int = 0) -> tuple[float, float]:
    """Interval of mean(values) for per-sample losses (n,), e.g. squared errors or cross-entropies (their units).

    Up to BCA_MAX_SAMPLES, a BCa bootstrap (the losses are skewed, so not a t-interval); above, Student's t-interval
    (scipy.stats.ttest_1samp), which the central limit theorem makes accurate at such n and which costs O(n) where
    BCa's jackknife costs O(n^2). (nan, nan) with fewer than 2 samples or a non-finite one.
    """
    from scipy.stats import bootstrap, ttest_1samp

    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) < 2 or not np.isfinite(values).all():
        return (math.nan, math.nan)
    if np.ptp(values) == 0:  # BCa is undefined on a constant sample (e.g. all errors 0); the mean is exact
        return (float(values[0]), float(values[0]))
    if len(values) > BCA_MAX_SAMPLES:
        ci = ttest_1samp(values, 0.0).confidence_interval(confidence_level=confidence)
        return (float(ci.low), float(ci.high))
    result = bootstrap((values,), np.mean, vectorized=True, confidence_level=confidence, n_resamples=n_resamples,
                       batch=200, method="BCa", rng=np.random.default_rng(seed))
    return (float(result.confidence_interval.low), float(result.confidence_interval.high))


def mean_gap_test(a: np.ndarray, b: np.ndarray) -> TestResult:
    """One-sided Welch t-test that mean(b) > mean(a) for per-sample losses a (n,), b (m,) (regression's gap_test).

    statistic: mean(b) - mean(a), in the losses' units. Welch's test does not assume equal variances; with hundreds
    of samples per split the means are close enough to normal even for skewed squared errors.
    """
    from scipy.stats import ttest_ind

    a, b = np.asarray(a, dtype=np.float64).ravel(), np.asarray(b, dtype=np.float64).ravel()
    if len(a) < 2 or len(b) < 2:
        return TestResult(math.nan, math.nan, f"too few samples (n_a={len(a)}, n_b={len(b)})")
    diff = float(b.mean() - a.mean())
    if np.ptp(a) == 0 and np.ptp(b) == 0:  # zero variance: the t statistic is undefined, the answer is not
        return TestResult(diff, 0.0 if diff > 0 else 1.0, f"constant losses: {b[0]:.4g} vs {a[0]:.4g}")
    p_value = float(ttest_ind(b, a, equal_var=False, alternative="greater").pvalue)
    detail = f"mean {b.mean():.4g} (n={len(b)}) vs {a.mean():.4g} (n={len(a)}), one-sided Welch p={p_value:.2g}"
    return TestResult(diff, p_value, detail)


# ----------------------------------------------------------------------------------------------------------------------
# distribution shift


def ks_softmax_test(p_ref: np.ndarray, p_new: np.ndarray, alpha: float = 0.05) -> TestResult:
    """Black-box shift detection on softmax outputs p_ref (n, K) and p_new (m, K), rows summing to 1.

    One two-sample Kolmogorov-Smirnov test per class column, Bonferroni-corrected: p = min(1, K * min_p) (Rabanser
    et al., "Failing Loudly", NeurIPS 2019, https://arxiv.org/abs/1810.11953). statistic: the KS distance D of the
    most shifted class (smallest p). alpha only sets the wording of detail.
    """
    import warnings

    from scipy.stats import ks_2samp

    p_ref, p_new = np.asarray(p_ref, dtype=np.float64), np.asarray(p_new, dtype=np.float64)
    if len(p_ref) == 0 or len(p_new) == 0:
        return TestResult(math.nan, math.nan, f"no samples (n={len(p_ref)}, m={len(p_new)})")
    num_classes = p_ref.shape[1]
    with warnings.catch_warnings():
        # the exact p-value fails on heavily tied columns (a collapsed softmax); scipy then gives the asymptotic one,
        # which is the one to use there, and says so in a RuntimeWarning that would reach the user's terminal
        warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful", category=RuntimeWarning)
        result = ks_2samp(p_ref, p_new, axis=0)  # one test per column
    distances, pvalues = np.atleast_1d(result.statistic), np.atleast_1d(result.pvalue)  # (K,), (K,)
    worst = int(np.argmin(pvalues))
    p_value = float(min(1.0, num_classes * pvalues[worst]))
    verdict = "shift" if p_value < alpha else "no shift"
    detail = (f"{verdict} at alpha={alpha:g}: most shifted class {worst} (KS D={distances[worst]:.3f}, "
              f"raw p={pvalues[worst]:.2g}), Bonferroni over {num_classes} classes p={p_value:.2g}")
    return TestResult(float(distances[worst]), p_value, detail)


def mmd_permutation_test(f_ref: np.ndarray, f_new: np.ndarray, n_permutations: int = 200, max_samples: int = 500,
                         seed: int = 0) -> TestResult:
    """Kernel two-sample test on features f_ref (n, D) and f_new (m, D), e.g. penultimate-layer activations.

    statistic: unbiased MMD^2 (Gretton et al., JMLR 2012) with a Gaussian kernel whose bandwidth is the median
    pairwise distance of the pooled sample. Each side is subsampled to max_samples, so the kernel matrix is at most
    1000 x 1000 and the test takes ~0.1 s for D = 256. p-value: (1 + #{permuted >= observed}) / (1 + n_permutations).
    """
    from scipy.spatial.distance import cdist

    if len(f_ref) < 2 or len(f_new) < 2:
        return TestResult(math.nan, math.nan, f"too few samples (n={len(f_ref)}, m={len(f_new)})")
    rng = np.random.default_rng(seed)
    f_ref = np.asarray(f_ref, dtype=np.float64).reshape(len(f_ref), -1)  # (n, D)
    f_new = np.asarray(f_new, dtype=np.float64).reshape(len(f_new), -1)  # (m, D)
    if len(f_ref) > max_samples:
        f_ref = f_ref[rng.choice(len(f_ref), max_samples, replace=False)]
    if len(f_new) > max_samples:
        f_new = f_new[rng.choice(len(f_new), max_samples, replace=False)]
    n, m = len(f_ref), len(f_new)

    pooled = np.concatenate([f_ref, f_new])  # (N, D), N = n + m
    sq_dist = cdist(pooled, pooled, "sqeuclidean")  # (N, N)
    off_diagonal = sq_dist[np.triu_indices(n + m, k=1)]
    bandwidth_sq = float(np.median(off_diagonal))
    if bandwidth_sq <= 0:  # more than half the pairs coincide: fall back to the mean distance, then to 1
        bandwidth_sq = float(off_diagonal.mean()) or 1.0
    kernel = np.exp(-sq_dist / (2.0 * bandwidth_sq))  # (N, N), ones on the diagonal

    # row 0 is the observed split, rows 1.. are permutations; each row marks the N samples as ref (1) or new (0)
    is_ref = np.zeros((n_permutations + 1, n + m))
    is_ref[:, :n] = 1.0
    is_ref[1:] = rng.permuted(is_ref[1:], axis=1)
    is_new = 1.0 - is_ref
    k_ref = is_ref @ kernel  # (P+1, N): each sample's kernel sum over the ref side
    total, diagonal = kernel.sum(), np.diag(kernel)
    sum_ref_ref = np.einsum("pn,pn->p", k_ref, is_ref) - is_ref @ diagonal  # i != j
    sum_ref_new = np.einsum("pn,pn->p", k_ref, is_new)
    sum_new_new = total - np.einsum("pn,pn->p", k_ref, is_ref) - 2 * sum_ref_new - is_new @ diagonal
    mmd2 = sum_ref_ref / (n * (n - 1)) + sum_new_new / (m * (m - 1)) - 2 * sum_ref_new / (n * m)  # (P+1,)

    observed = float(mmd2[0])
    p_value = float((1 + np.sum(mmd2[1:] >= observed)) / (1 + n_permutations))
    detail = (f"MMD^2={observed:.4f} on {n} vs {m} samples (bandwidth {math.sqrt(bandwidth_sq):.3g}), "
              f"permutation p={p_value:.3g} ({n_permutations} permutations)")
    return TestResult(observed, p_value, detail)


def permutations_for(level: float, minimum: int = 200, maximum: int = 10_000) -> int:
    """Enough permutations that a permutation p-value can fall below `level`: its smallest value is 1 / (1 + n),
    so n >= 4 / level leaves room for p-values a few times smaller than the level."""
    return int(min(maximum, max(minimum, math.ceil(4 / level))))


def label_shift_test(pred_ref: np.ndarray, pred_new: np.ndarray, num_classes: int, n_resamples: int = 2000,
                     seed: int = 0, confidence: float = 0.95) -> TestResult:
    """Chi-square test of homogeneity of the predicted-class histograms of pred_ref (n,) and pred_new (m,).

    Classes predicted in neither sample are dropped (their expected count is 0). With an expected count below 5 the
    chi-square approximation is anti-conservative: the p-value then comes from a permutation test of the same
    statistic (scipy's PermutationMethod). statistic: the chi-square value. detail names the class whose predicted
    share moved most, each share with its `confidence` Wilson interval.
    """
    from scipy.stats import PermutationMethod, chi2_contingency

    counts = np.stack([np.bincount(np.asarray(pred_ref, dtype=np.int64), minlength=num_classes),
                       np.bincount(np.asarray(pred_new, dtype=np.int64), minlength=num_classes)])  # (2, K)
    if counts[0].sum() == 0 or counts[1].sum() == 0:
        return TestResult(math.nan, math.nan, f"no samples (n={counts[0].sum()}, m={counts[1].sum()})")
    present = np.flatnonzero(counts.sum(axis=0) > 0)
    if len(present) < 2:
        return TestResult(0.0, 1.0, f"every prediction is class {present[0]} in both samples")
    table = counts[:, present]
    expected = table.sum(axis=1, keepdims=True) * table.sum(axis=0, keepdims=True) / table.sum()
    small = bool((expected < 5).any())
    method = PermutationMethod(n_resamples=n_resamples, rng=np.random.default_rng(seed)) if small else None
    result = chi2_contingency(table, correction=False, method=method)
    shares = counts / counts.sum(axis=1, keepdims=True)  # (2, K)
    moved = int(np.argmax(np.abs(shares[1] - shares[0])))
    how = f"permutation p over {n_resamples} resamples (expected counts < 5)" if small else "p"
    share = [f"{shares[i, moved]:.1%} [" + ", ".join(f"{100 * b:.1f}" for b in error_interval(
        int(counts[i, moved]), int(counts[i].sum()), confidence)) + "]" for i in (0, 1)]
    detail = (f"predicted class {moved}: {share[0]} -> {share[1]} ({100 * confidence:g}% intervals); "
              f"chi2={result.statistic:.1f}" + ("" if small else f", dof={result.dof}") + f", {how}={result.pvalue:.2g}")
    return TestResult(float(result.statistic), float(result.pvalue), detail)


# ----------------------------------------------------------------------------------------------------------------------
# per-class views and baselines


def per_class_error(y_true: np.ndarray, y_pred: np.ndarray, num_classes: int) -> np.ndarray:
    """Error rate (fraction) of each true class, (K,) float64; nan for a class with no sample."""
    from sklearn.metrics import confusion_matrix

    if len(y_true) == 0:  # sklearn refuses empty input
        return np.full(num_classes, np.nan)
    counts = confusion_matrix(y_true, y_pred, labels=np.arange(num_classes))  # (K, K), rows: true class
    per_class = counts.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(per_class > 0, 1.0 - np.diag(counts) / per_class, np.nan)


def class_shares(y: np.ndarray, num_classes: int) -> np.ndarray:
    """Fraction of the samples in each class, (K,) float64 summing to 1; all nan when y is empty."""
    counts = np.bincount(np.asarray(y, dtype=np.int64), minlength=num_classes).astype(np.float64)
    return counts / counts.sum() if counts.sum() > 0 else np.full(num_classes, np.nan)


def chance_prediction(y_train: np.ndarray, task: str) -> float:
    """What a model that ignores its input predicts: the training majority class, or the training mean."""
    _check_task(task)
    y_train = np.asarray(y_train)
    if task == "classification":
        return int(np.bincount(y_train.astype(np.int64)).argmax())
    return float(y_train.astype(np.float64).mean())


def chance_error(y_train: np.ndarray, y_eval: np.ndarray, task: str) -> float:
    """Error of a model that ignores its input (chance_prediction), on y_eval.

    classification: error rate (fraction) of always predicting the training majority class.
    regression: RMSE (target units) of always predicting the training mean.
    """
    return model_error(task, y_eval, np.full(len(y_eval), chance_prediction(y_train, task)))


def model_error(task: str, y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Error rate (classification) or RMSE (regression) of predictions y_pred (n,) of y_true (n,)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if task == "classification":
        return float(np.mean(y_pred != y_true))
    return float(np.sqrt(np.mean((y_pred.astype(np.float64) - y_true.astype(np.float64)) ** 2)))


def model_error_interval(task: str, y_true: np.ndarray, y_pred: np.ndarray,
                         confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided interval of model_error: Wilson's for an error rate; for an RMSE, the square root of the bounds of
    the mean squared error's interval (mean_interval)."""
    y_true, y_pred = np.asarray(y_true).ravel(), np.asarray(y_pred).ravel()
    if task == "classification":
        return error_interval(int(np.sum(y_pred != y_true)), len(y_true), confidence)
    low, high = mean_interval((y_pred.astype(np.float64) - y_true.astype(np.float64)) ** 2, confidence)
    return (math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0))) if math.isfinite(low) else (math.nan, math.nan)


def simple_baseline_error(x_train: np.ndarray, y_train: np.ndarray, x_eval: np.ndarray, y_eval: np.ndarray,
                          task: str, max_train: int = 5000, seed: int = 0) -> float:
    """Error on (x_eval, y_eval) of a linear model on standardised, flattened inputs x (n, ...).

    classification: error rate (fraction) of a LogisticRegression; regression: RMSE (target units) of a Ridge.
    At most max_train training samples (a random subset) keep it to ~0.3 s on digits (1078 x 64).
    """
    return simple_baseline_errors(x_train, y_train, {"eval": (x_eval, y_eval)}, task, max_train, seed)["eval"]


def simple_baseline_errors(x_train: np.ndarray, y_train: np.ndarray, evals: dict[str, tuple[np.ndarray, np.ndarray]],
                           task: str, max_train: int = 5000, seed: int = 0,
                           predictions: Optional[dict[str, np.ndarray]] = None) -> dict[str, float]:
    """simple_baseline_error on several evaluation sets {name: (x, y)} with one fit, and its training error on the
    rows it was fitted on ("fitted"); `predictions`, when given, is filled with each set's predictions (n,), for a
    paired comparison with another model on the same samples, and "fitted_true" with the targets of the fitted rows
    (for the interval of the training error)."""
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _check_task(task)
    x_train = np.asarray(x_train, dtype=np.float64).reshape(len(x_train), -1)  # (n, features)
    y_train = np.asarray(y_train)
    if len(x_train) > max_train:
        keep = np.random.default_rng(seed).choice(len(x_train), max_train, replace=False)
        x_train, y_train = x_train[keep], y_train[keep]
    out = {}
    if task == "classification" and len(np.unique(y_train)) < 2:
        # LogisticRegression refuses one class; the best it could do is predict it
        evals = {**evals, "fitted": (x_train, y_train)}
        if predictions is not None:
            predictions.update({name: np.full(len(y), y_train[0]) for name, (_, y) in evals.items()},
                               fitted_true=y_train)
        return {name: float(np.mean(np.asarray(y) != y_train[0])) for name, (_, y) in evals.items()}
    if task == "classification":
        # lbfgs on standardised digits converges in ~30 iterations; 1000 leaves room for harder sets
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(x_train, y_train)
    else:
        model = make_pipeline(StandardScaler(), Ridge(alpha=1.0))
        model.fit(x_train, y_train.astype(np.float64))
    evals = {**evals, "fitted": (x_train, y_train)}  # the rows it was fitted on: its training error
    if predictions is not None:
        predictions["fitted_true"] = y_train
    for name, (x, y) in evals.items():
        pred = model.predict(np.asarray(x, dtype=np.float64).reshape(len(x), -1))
        if predictions is not None:
            predictions[name] = pred
        out[name] = model_error(task, y, pred)
    return out


# ----------------------------------------------------------------------------------------------------------------------
# learning curves


def curve_trend(values: np.ndarray, window: int = 5) -> str:
    """Shape of a per-epoch curve (a loss, lower is better), one of CURVE_TRENDS, decided in this order:

    diverged     a non-finite value, or last > DIVERGED_FACTOR x minimum and above the first epoch (without that
                 second condition, a validation loss that overfits from 0.05 to 0.6 would count as diverged);
    oscillating  see oscillation(): the last 2 x window epochs zigzag by a step that matters at the curve's
                 level and against the range it covered;
    falling      a linear fit (scipy.stats.linregress) on the last `window` epochs drops more than FALLING_REL_DROP
                 of the level, with a one-sided p < FALLING_P_VALUE (with 2 epochs: the last is 1% below the first);
    flat         no epoch strays more than FLAT_REL_CHANGE from the first one;
    converged    anything else: it fell, or fell and rose, and has stopped falling (see u_curve for a rise);
    short        fewer than 2 epochs: no shape to read (checked first).
    """
    from scipy.stats import linregress

    values = np.asarray(values, dtype=np.float64).ravel()
    if len(values) < 2:
        return "short"  # nothing to compare yet
    if not np.all(np.isfinite(values)):
        return "diverged"
    first, last, lowest = values[0], values[-1], values.min()
    if last > DIVERGED_FACTOR * lowest and last > first:
        return "diverged"

    if oscillation(values, window)["oscillating"]:
        return "oscillating"

    recent = values[-window:]
    level = max(np.mean(np.abs(recent)), np.finfo(float).tiny)
    if len(recent) >= 3 and np.ptp(recent) > 0:
        fit = linregress(np.arange(len(recent)), recent, alternative="less")
        if -fit.slope * (len(recent) - 1) / level > FALLING_REL_DROP and fit.pvalue < FALLING_P_VALUE:
            return "falling"
    elif len(recent) == 2 and (recent[0] - recent[1]) / level > FALLING_REL_DROP:
        return "falling"

    if np.max(np.abs(values - first)) <= FLAT_REL_CHANGE * max(abs(first), np.finfo(float).tiny):
        return "flat"
    return "converged"


def oscillation(values: np.ndarray, window: int = 5) -> dict:
    """Whether a finite per-epoch curve zigzags at its end: over its last 2 x window epochs, the share of successive
    differences that flip sign (flips, of those that are not zero) and the mean |step| as a share of the tail's mean
    level (of_level) and of the range the whole curve covered (of_range). oscillating: flips >=
    OSCILLATION_FLIP_FRACTION with at least 3 non-zero steps, of_level and of_range >= OSCILLATION_AMPLITUDE.
    The one rule for "the loss oscillates", in curve_trend and in the training-health finding (health.py)."""
    values = np.asarray(values, dtype=np.float64).ravel()
    tail = values[-2 * window:]
    steps = np.diff(tail)
    signs = np.sign(steps[steps != 0])
    tiny = np.finfo(float).tiny
    out = {"epochs": len(tail), "flips": float(np.mean(signs[1:] != signs[:-1])) if len(signs) >= 2 else 0.0,
           "of_level": float(np.mean(np.abs(steps)) / max(np.mean(np.abs(tail)), tiny)) if len(steps) else 0.0,
           "of_range": float(np.mean(np.abs(steps)) / max(np.ptp(values), tiny)) if len(steps) else 0.0}
    out["oscillating"] = bool(len(signs) >= 3 and out["flips"] >= OSCILLATION_FLIP_FRACTION
                              and min(out["of_level"], out["of_range"]) >= OSCILLATION_AMPLITUDE)
    return out


def _trend_after(epochs: np.ndarray, values: np.ndarray) -> tuple[float, float]:
    """(slope per epoch, one-sided p of a slope > 0) of scipy.stats.linregress over the finite points; (nan, nan)
    with fewer than 3 of them or a constant curve."""
    from scipy.stats import linregress

    finite = np.isfinite(values)
    if finite.sum() < 3 or np.ptp(values[finite]) == 0:
        return math.nan, math.nan
    fit = linregress(epochs[finite], values[finite], alternative="greater")
    return float(fit.slope), float(fit.pvalue)


def u_curve(val_loss: np.ndarray, best_epoch: int, train_loss: np.ndarray | None = None) -> dict:
    """How far validation loss climbed after its best epoch, and whether the train-val gap kept growing.

    best_epoch is 1-based, as EarlyStopping.best_epoch (0: take the epoch of the smallest finite val_loss).
    Returns best_epoch, last_epoch, epochs_after_best (ints); best_val_loss, last_val_loss, relative_rise
    ((last - best) / |best|, a fraction; inf if the last value is not finite) (floats); rise_slope, rise_p (the
    fitted trend of val_loss per epoch after the best epoch and its one-sided p of a rise) and rising; gap_slope,
    gap_p (the same for val_loss - train_loss; nan without train_loss) and gap_growing.

    The one rule of the curve descriptors (curve_trend's "falling", mirrored): a rise or a growth is claimed only
    when a line fitted to the epochs after the best one climbs with a one-sided p < FALLING_P_VALUE (linregress),
    over at least U_MIN_EPOCHS of them, and for `rising` by more than U_RISE of the best level. The best epoch itself
    is left out of both fits: it was chosen as the minimum of a noisy curve, so a flat curve that merely jitters
    would climb away from it.
    """
    val_loss = np.asarray(val_loss, dtype=np.float64).ravel()
    if best_epoch < 1:
        best_epoch = int(np.nanargmin(np.where(np.isfinite(val_loss), val_loss, np.nan))) + 1
    best, last = float(val_loss[best_epoch - 1]), float(val_loss[-1])
    relative_rise = (last - best) / max(abs(best), np.finfo(float).tiny) if math.isfinite(last) else math.inf
    after = np.arange(best_epoch + 1, len(val_loss) + 1)  # the epochs after the best one (1-based)
    enough = len(after) >= U_MIN_EPOCHS
    rise_slope, rise_p = _trend_after(after, val_loss[best_epoch:])
    gap_slope = gap_p = math.nan
    if train_loss is not None:
        gap = val_loss - np.asarray(train_loss, dtype=np.float64).ravel()
        gap_slope, gap_p = _trend_after(after, gap[best_epoch:])
    return {
        "best_epoch": int(best_epoch),
        "last_epoch": len(val_loss),
        "epochs_after_best": len(val_loss) - int(best_epoch),
        "best_val_loss": best,
        "last_val_loss": last,
        "relative_rise": float(relative_rise),
        "rise_slope": rise_slope,
        "rise_p": rise_p,
        "rising": bool(enough and math.isfinite(relative_rise) and relative_rise > U_RISE
                       and rise_p < FALLING_P_VALUE),
        "gap_slope": gap_slope,
        "gap_p": gap_p,
        "gap_growing": bool(enough and gap_slope > 0 and gap_p < FALLING_P_VALUE),
    }

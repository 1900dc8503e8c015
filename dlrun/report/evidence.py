"""Label-free evidence of distribution shift between the validation and test splits, and per-class errors.

Three two-sample tests that need no labels (Rabanser, Günnemann & Lipton, "Failing Loudly", NeurIPS 2019):
- Kolmogorov-Smirnov on each softmax output, Bonferroni-corrected (black-box shift detection: the best single
  detector in that study);
- a kernel MMD permutation test on the penultimate features (subsampled so it stays well under a second);
- a chi-square test on the predicted-class histograms (label shift).
For regression the KS test runs on the predictions instead of the softmax. Pure: arrays in, dicts out.
"""

from __future__ import annotations

import math
from typing import Any, Optional

import numpy as np

from dlrun.report import stats


def _result(test: stats.TestResult, level: float, name: str, what: str) -> dict:
    p = test.p_value
    return {"name": name, "what": what, "statistic": test.statistic, "p_value": p, "level": level,
            "fires": bool(np.isfinite(p) and p < level), "detail": test.detail}


def finite_rows(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """The rows of a 2-D array with no NaN/inf (a diverged model's outputs), or None when none is left."""
    if a is None:
        return None
    a = np.asarray(a)
    keep = np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    return a[keep] if keep.sum() > 1 else None


def shift_tests(val: Any, test: Any, task: str, num_classes: int, alpha: float, seed: int = 0) -> dict[str, dict]:
    """Run the label-free tests between two SplitEvaluations; {name: {statistic, p_value, level, fires, detail}}.

    `alpha` is the level of the whole family: each test is judged at alpha / (number of tests) (Bonferroni), and
    `fires` says p < that level, the same rule the verdict uses. Tests whose inputs are not finite (a diverged
    model) are left out."""
    outputs_finite = all(np.isfinite(np.asarray(s.y_pred, float)).all() for s in (val, test))
    softmax = task == "classification" and val.probs is not None and test.probs is not None \
        and np.isfinite(val.probs).all() and np.isfinite(test.probs).all()
    f_val, f_test = finite_rows(val.features), finite_rows(test.features)
    features = f_val is not None and f_test is not None
    count = (2 if softmax else int(task != "classification" and outputs_finite)) + int(features)
    level = alpha / max(1, count)
    out: dict[str, dict] = {}
    if softmax:
        # two classes: the columns sum to one, so one column carries all the information (no Bonferroni for two)
        p_val, p_test = (val.probs[:, 1:], test.probs[:, 1:]) if val.probs.shape[1] == 2 else (val.probs, test.probs)
        out["ks_softmax"] = _result(stats.ks_softmax_test(p_val, p_test, level), level, "ks_softmax",
                                    "Kolmogorov-Smirnov on each softmax output (Bonferroni over classes)")
        out["label_shift"] = _result(stats.label_shift_test(val.y_pred, test.y_pred, num_classes,
                                                            n_resamples=stats.permutations_for(level), seed=seed,
                                                            confidence=1 - 2 * alpha),  # the report's 1 - alpha
                                     level, "label_shift", "chi-square on the predicted-class histograms")
    elif task != "classification" and outputs_finite:
        from scipy.stats import ks_2samp

        r = ks_2samp(np.asarray(val.y_pred, float), np.asarray(test.y_pred, float))
        out["ks_prediction"] = _result(stats.TestResult(float(r.statistic), float(r.pvalue),
                                                        f"KS distance {r.statistic:.3f} on the predictions"),
                                       level, "ks_prediction", "Kolmogorov-Smirnov on the predictions")
    if features:
        out["mmd_features"] = _result(stats.mmd_permutation_test(f_val, f_test, seed=seed,
                                                                 n_permutations=stats.permutations_for(level)),
                                      level, "mmd_features", "kernel MMD permutation test on the penultimate features")
    return out


def per_class(evaluation: Any, class_names: list[str]) -> Optional[dict]:
    """Per-class error and class shares on val and test (classification), for systematic errors per class."""
    if evaluation.task != "classification":
        return None
    k = len(class_names)
    val, test, train = evaluation.splits["val"], evaluation.splits["test"], evaluation.splits["train"]
    count = lambda y: np.bincount(np.asarray(y, dtype=np.int64), minlength=k)  # noqa: E731
    wrong = lambda s: np.bincount(np.asarray(s.y_true, dtype=np.int64)[np.asarray(s.y_true) != np.asarray(s.y_pred)],
                                  minlength=k)  # noqa: E731
    return {
        "class_names": list(class_names),
        "val_error": stats.per_class_error(val.y_true, val.y_pred, k),
        "test_error": stats.per_class_error(test.y_true, test.y_pred, k),
        "train_share": stats.class_shares(train.y_true, k),
        "test_share": stats.class_shares(test.y_true, k),
        "val_count": count(val.y_true), "test_count": count(test.y_true), "train_count": count(train.y_true),
        "val_wrong": wrong(val), "test_wrong": wrong(test),
    }


MIN_CLASS_COUNT = 5  # a class with fewer samples in a split is not tested: no test has power there


def worst_classes(table: dict, min_gap: float, alpha: float = 0.05, top: int = 3) -> list[dict]:
    """Classes whose test error exceeds their validation error by more than min_gap with confidence, by the one
    rule at alpha / K (Bonferroni over the K classes): the one-sided lower bound of the difference (Newcombe's
    interval) above min_gap; worst first, each with its one-sided Fisher exact p-value too; classes with fewer than
    MIN_CLASS_COUNT samples in either split are not tested. Each: {name, val_wrong, val_n, test_wrong, test_n,
    low, p_value, level}."""
    from scipy.stats import fisher_exact

    k = len(table["class_names"])
    found = []
    for i in range(k):
        n_val, n_test = int(table["val_count"][i]), int(table["test_count"][i])
        if min(n_val, n_test) < MIN_CLASS_COUNT:
            continue
        e_val, e_test = int(table["val_wrong"][i]), int(table["test_wrong"][i])
        gap = e_test / n_test - e_val / n_val
        low, _ = stats.rate_diff_interval(e_val, n_val, e_test, n_test, confidence=1 - 2 * alpha / k)
        if low > min_gap:
            p = float(fisher_exact([[e_test, n_test - e_test], [e_val, n_val - e_val]], alternative="greater").pvalue)
            found.append((gap, {"name": table["class_names"][i], "val_wrong": e_val, "val_n": n_val,
                                "test_wrong": e_test, "test_n": n_test, "low": low, "p_value": p, "level": alpha / k}))
    return [entry for _, entry in sorted(found, key=lambda pair: -pair[0])[:top]]


def share_changes(table: dict, alpha: float = 0.05, ratio: float = 2.0) -> list[dict]:
    """Classes over- or under-represented in test relative to train, by the one rule at alpha / K (Bonferroni over
    the K classes): the ratio of a class's test share to its training share is confirmed beyond `ratio` either way
    (its two-sided 1 - 2 alpha / K interval lies above `ratio` or below 1 / `ratio`). The interval is the exact
    conditional one for a ratio of two rates: given the class's count in both splits, its test count is binomial
    (scipy's binomtest, Clopper-Pearson), conservative for shares, whose counts vary less than Poisson ones; its
    p-value is that test of equal shares. Classes expected fewer than MIN_CLASS_COUNT times in test are not tested.
    Each: {name, train_count, train_n, test_count, test_n, train_share, ratio, low, high, p_value, level}."""
    from scipy.stats import binomtest

    k = len(table["class_names"])
    train_counts, test_counts = np.asarray(table["train_count"]), np.asarray(table["test_count"])
    n_train, n_test = int(train_counts.sum()), int(test_counts.sum())
    if not n_train or not n_test:
        return []
    odds = n_train / n_test  # a test share p of the pooled count is a ratio p / (1 - p) x odds of the two shares
    out = []
    for name, c_train, c_test in zip(table["class_names"], train_counts.tolist(), test_counts.tolist()):
        if c_train * n_test / n_train < MIN_CLASS_COUNT:
            continue
        test = binomtest(int(c_test), int(c_train + c_test), n_test / (n_train + n_test))
        ci = test.proportion_ci(confidence_level=1 - 2 * alpha / k, method="exact")
        low, high = (p / (1 - p) * odds if p < 1 else math.inf for p in (ci.low, ci.high))
        if low > ratio or high < 1 / ratio:
            out.append({"name": name, "train_count": int(c_train), "train_n": n_train, "test_count": int(c_test),
                        "test_n": n_test, "train_share": c_train / n_train,
                        "ratio": (c_test / n_test) / (c_train / n_train), "low": low, "high": high,
                        "p_value": float(test.pvalue), "level": alpha / k})
    return out


def curves(history: Any) -> dict:
    """Shape descriptors of the learning curves (stats.curve_trend, stats.u_curve).

    The U-curve starts at the epoch of the smallest validation loss, read from the curve itself: the epoch whose
    weights the model holds (history.best_epoch) is the last one when early stopping or restore_best is off."""
    if not history.rows:
        return {"train_trend": "short", "val_trend": "short", "u_curve": None, "val_min_epoch": 0}
    train_loss, val_loss = history.column("train_loss"), history.column("val_loss")
    finite = np.isfinite(val_loss)
    val_min_epoch = int(np.argmin(np.where(finite, val_loss, np.inf))) + 1 if finite.any() else 0
    return {"train_trend": stats.curve_trend(train_loss), "val_trend": stats.curve_trend(val_loss),
            "u_curve": stats.u_curve(val_loss, val_min_epoch, train_loss) if val_min_epoch else None,
            "val_min_epoch": val_min_epoch}


__all__ = ["curves", "per_class", "share_changes", "shift_tests", "worst_classes"]

"""Label-free evidence of distribution shift between the validation and test splits, and per-class errors.

Three two-sample tests that need no labels (Rabanser, Günnemann & Lipton, "Failing Loudly", NeurIPS 2019):
- Kolmogorov-Smirnov on each softmax output, Bonferroni-corrected (black-box shift detection: the best single
  detector in that study);
- a kernel MMD permutation test on the penultimate features (subsampled so it stays well under a second);
- a chi-square test on the predicted-class histograms (label shift).
For regression the KS test runs on the predictions instead of the softmax. Pure: arrays in, dicts out.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from dlrun.report import stats


def _result(test: stats.TestResult, alpha: float, name: str, what: str) -> dict:
    p = test.p_value
    return {"name": name, "what": what, "statistic": test.statistic, "p_value": p,
            "fires": bool(np.isfinite(p) and p < alpha), "detail": test.detail}


def finite_rows(a: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """The rows of a 2-D array with no NaN/inf (a diverged model's outputs), or None when none is left."""
    if a is None:
        return None
    a = np.asarray(a)
    keep = np.isfinite(a.reshape(len(a), -1)).all(axis=1)
    return a[keep] if keep.sum() > 1 else None


def shift_tests(val: Any, test: Any, task: str, num_classes: int, alpha: float, seed: int = 0) -> dict[str, dict]:
    """Run the label-free tests between two SplitEvaluations; {name: {statistic, p_value, fires, detail}}.

    Tests whose inputs are not finite (a diverged model) are left out."""
    out: dict[str, dict] = {}
    outputs_finite = all(np.isfinite(np.asarray(s.y_pred, float)).all() for s in (val, test))
    if task == "classification" and val.probs is not None and test.probs is not None \
            and np.isfinite(val.probs).all() and np.isfinite(test.probs).all():
        out["ks_softmax"] = _result(stats.ks_softmax_test(val.probs, test.probs, alpha), alpha, "ks_softmax",
                                    "Kolmogorov-Smirnov on each softmax output (Bonferroni)")
        out["label_shift"] = _result(stats.label_shift_test(val.y_pred, test.y_pred, num_classes), alpha,
                                     "label_shift", "chi-square on the predicted-class histograms")
    elif task != "classification" and outputs_finite:
        from scipy.stats import ks_2samp

        r = ks_2samp(np.asarray(val.y_pred, float), np.asarray(test.y_pred, float))
        out["ks_prediction"] = _result(stats.TestResult(float(r.statistic), float(r.pvalue),
                                                        f"KS distance {r.statistic:.3f} on the predictions"),
                                       alpha, "ks_prediction", "Kolmogorov-Smirnov on the predictions")
    f_val, f_test = finite_rows(val.features), finite_rows(test.features)
    if f_val is not None and f_test is not None:
        out["mmd_features"] = _result(stats.mmd_permutation_test(f_val, f_test, seed=seed), alpha,
                                      "mmd_features", "kernel MMD permutation test on the penultimate features")
    return out


def per_class(evaluation: Any, class_names: list[str]) -> Optional[dict]:
    """Per-class error and class shares on val and test (classification), for systematic errors per class."""
    if evaluation.task != "classification":
        return None
    k = len(class_names)
    val, test, train = evaluation.splits["val"], evaluation.splits["test"], evaluation.splits["train"]
    return {
        "class_names": list(class_names),
        "val_error": stats.per_class_error(val.y_true, val.y_pred, k),
        "test_error": stats.per_class_error(test.y_true, test.y_pred, k),
        "train_share": stats.class_shares(train.y_true, k),
        "test_share": stats.class_shares(test.y_true, k),
    }


def worst_classes(table: dict, min_gap: float, top: int = 3) -> list[tuple[str, float, float]]:
    """Classes whose test error exceeds their validation error by more than min_gap, worst first."""
    gaps = np.nan_to_num(table["test_error"] - table["val_error"], nan=0.0)
    order = np.argsort(-gaps)
    return [(table["class_names"][i], float(table["val_error"][i]), float(table["test_error"][i]))
            for i in order[:top] if gaps[i] > min_gap]


def share_changes(table: dict, ratio: float = 2.0) -> list[tuple[str, float, float]]:
    """Classes over- or under-represented in test relative to train by more than `ratio`."""
    out = []
    for name, tr, te in zip(table["class_names"], table["train_share"], table["test_share"]):
        if tr > 0 and (te / tr > ratio or te / tr < 1 / ratio):
            out.append((name, float(tr), float(te)))
    return out


def curves(history: Any) -> dict:
    """Shape descriptors of the learning curves (stats.curve_trend, stats.u_curve)."""
    if not history.rows:
        return {"train_trend": "flat", "val_trend": "flat", "u_curve": None}
    train_loss, val_loss = history.column("train_loss"), history.column("val_loss")
    return {"train_trend": stats.curve_trend(train_loss), "val_trend": stats.curve_trend(val_loss),
            "u_curve": stats.u_curve(val_loss, history.best_epoch, train_loss)}


__all__ = ["curves", "per_class", "share_changes", "shift_tests", "worst_classes"]

"""predictions.csv, a run's per-sample predictions on its held-out splits, and the comparison of two runs sample by
sample on the same validation samples, which dlrun-iterate (each step against the best before it) and the sweep
summary (the best job against the runner-up) both make.

Writing is render.render's (every report writes the file); reading and comparing are here, so that the two readers
say the same thing the same way: a difference in validation error (stats.paired_error_difference) or in mean
validation loss (compare_loss) with its two-sided interval, "confirmed" when the interval excludes 0, else "within
noise".
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np

FILE = "predictions.csv"
SPLITS = ("train_dev", "val", "test")  # the held-out splits: what a model is judged on


class Prediction(NamedTuple):
    """One validation sample of predictions.csv."""

    y_true: float
    y_pred: float
    loss: Optional[float]  # the sample's loss (the training criterion); None in a file written before the column


def to_csv(evaluation: Any, splits: Any) -> str:
    """predictions.csv: one row per sample of the held-out splits, `split, index, y_true, y_pred, loss` (index: the row
    in the loaded dataset, or in dataset.val_from / test_from's file; loss: the sample's loss, the evaluation's
    sample_loss, whose mean is report.json's metrics.<split>.loss) and, for classification, `true_class,
    predicted_class, confidence` (the largest softmax probability). It is also where to look for the samples a
    model gets wrong."""
    classification = evaluation.task == "classification"
    names = list(getattr(splits, "class_names", []) or [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", "index", "y_true", "y_pred", "loss"]
                    + (["true_class", "predicted_class", "confidence"] if classification else []))
    for name in SPLITS:
        s, split = evaluation.splits.get(name), getattr(splits, name, None)
        if s is None or split is None:
            continue
        index = np.asarray(split.index)
        if classification:
            confidence = s.probs.max(axis=1) if s.probs is not None and len(s.probs) else np.full(s.n, np.nan)
            for i, t, p, loss, c in zip(index, s.y_true, s.y_pred, s.sample_loss, confidence):
                writer.writerow([name, int(i), int(t), int(p), f"{loss:.8g}", names[int(t)] if int(t) < len(names)
                                 else "", names[int(p)] if int(p) < len(names) else "", f"{c:.6g}"])
        else:
            writer.writerows([name, int(i), f"{t:.8g}", f"{p:.8g}", f"{loss:.8g}"]
                             for i, t, p, loss in zip(index, s.y_true, s.y_pred, s.sample_loss))
    return out.getvalue()


def read_val(run_dir: Path) -> Optional[dict[int, Prediction]]:
    """A run's validation predictions from its predictions.csv: {index: Prediction(y_true, y_pred, loss)} (loss None
    in a file without the column), or None without a file."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        return {int(r["index"]): Prediction(float(r["y_true"]), float(r["y_pred"]),
                                            float(r["loss"]) if r.get("loss") not in (None, "") else None)
                for r in csv.DictReader(f) if r["split"] == "val"}


def _not_comparable(before: Optional[dict], after: Optional[dict]) -> Optional[str]:
    """Why two read_val results cannot be compared sample by sample, or None when they can."""
    if not before or not after:
        return f"no {FILE} to compare"
    if before.keys() != after.keys() or any(before[i][0] != after[i][0] for i in before):
        return "not the same validation samples"
    return None


def compare(task: str, before: Optional[dict], after: Optional[dict], confidence: float = 0.95) -> dict:
    """Validation error of `after` minus `before` (two read_val results) on the same samples, with its two-sided
    `confidence` interval (stats.paired_error_difference: Newcombe's paired interval for classification, a paired
    bootstrap of the RMSE for regression); {"note": ...} instead when the two did not predict the same samples."""
    from dlrun.report.stats import paired_error_difference

    note = _not_comparable(before, after)
    if note:
        return {"note": note}
    order = sorted(before)
    y = np.array([before[i][0] for i in order])
    return paired_error_difference(task, y, np.array([before[i][1] for i in order]),
                                   np.array([after[i][1] for i in order]), confidence=confidence)


def compare_loss(before: Optional[dict], after: Optional[dict], confidence: float = 0.95) -> dict:
    """Mean validation loss of `after` minus `before` (two read_val results) on the same samples: the mean of the
    per-sample differences with its two-sided `confidence` interval, by stats.mean_interval, the rule of each job's
    metrics.val.loss_interval: a BCa bootstrap up to stats.BCA_MAX_SAMPLES (scipy.stats.bootstrap over the
    differences, which is the paired bootstrap of the difference of means), Student's t beyond (ttest_1samp on the
    differences, i.e. scipy.stats.ttest_rel). Returns metric "val_loss", difference, interval, n and `confirmed`
    ("lower" / "higher" when the interval excludes 0, else None), as compare does; {"note": ...} when the two did
    not predict the same samples or a file has no loss column (written before it existed)."""
    from dlrun.report.stats import confirmed_direction, mean_interval

    note = _not_comparable(before, after)
    if note:
        return {"note": note}
    if any(len(p) < 3 or p[2] is None for p in (*before.values(), *after.values())):  # p: Prediction or (y, pred)
        return {"note": f"no per-sample loss in {FILE} (written by an older dlrun)"}
    order = sorted(before)
    differences = np.array([after[i][2] - before[i][2] for i in order])  # (n,)
    low, high = mean_interval(differences, confidence)
    confirmed = confirmed_direction(low, high)
    return {"metric": "val_loss", "difference": float(differences.mean()), "interval": [low, high],
            "n": len(order), "confirmed": confirmed}


def difference_text(vs: dict, task: Optional[str]) -> str:
    """'-4.4 pts [-6.1, -2.8]' (classification error: percentage points) or '+0.0123 [-0.004, +0.03]' (RMSE, or a
    mean loss: compare_loss's metric val_loss)."""
    low, high = vs["interval"]
    if task == "classification" and vs.get("metric") != "val_loss":
        return f"{100 * vs['difference']:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]"
    return f"{vs['difference']:+.4g} [{low:+.4g}, {high:+.4g}]"


def verdict_text(vs: dict) -> str:
    """'lower (confirmed)', 'higher (confirmed)' or 'within noise'."""
    return f"{vs['confirmed']} (confirmed)" if vs["confirmed"] else "within noise"

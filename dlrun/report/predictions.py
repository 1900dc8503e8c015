"""predictions.csv, a run's per-sample predictions on its held-out splits, and the comparison of two runs sample by
sample on the same validation samples, which dlrun-iterate (each step against the best before it) and the sweep
summary (the best job against the runner-up) both make.

Writing is render.render's (every report writes the file); reading and comparing are here, so that the two readers
say the same thing the same way: a difference in validation error with its 95% interval
(stats.paired_error_difference), "confirmed" when the interval excludes 0, else "within noise".
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Optional

import numpy as np

FILE = "predictions.csv"
SPLITS = ("train_dev", "val", "test")  # the held-out splits: what a model is judged on


def to_csv(evaluation: Any, splits: Any) -> str:
    """predictions.csv: one row per sample of the held-out splits, `split, index, y_true, y_pred` (index: the row in
    the loaded dataset, or in dataset.val_from / test_from's file) and, for classification, `true_class,
    predicted_class, confidence` (the largest softmax probability). It is also where to look for the samples a
    model gets wrong."""
    classification = evaluation.task == "classification"
    names = list(getattr(splits, "class_names", []) or [])
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["split", "index", "y_true", "y_pred"]
                    + (["true_class", "predicted_class", "confidence"] if classification else []))
    for name in SPLITS:
        s, split = evaluation.splits.get(name), getattr(splits, name, None)
        if s is None or split is None:
            continue
        index = np.asarray(split.index)
        if classification:
            confidence = s.probs.max(axis=1) if s.probs is not None and len(s.probs) else np.full(s.n, np.nan)
            for i, t, p, c in zip(index, s.y_true, s.y_pred, confidence):
                writer.writerow([name, int(i), int(t), int(p), names[int(t)] if int(t) < len(names) else "",
                                 names[int(p)] if int(p) < len(names) else "", f"{c:.6g}"])
        else:
            writer.writerows([name, int(i), f"{t:.8g}", f"{p:.8g}"] for i, t, p in zip(index, s.y_true, s.y_pred))
    return out.getvalue()


def read_val(run_dir: Path) -> Optional[dict]:
    """A run's validation predictions from its predictions.csv: {index: (y_true, y_pred)}, or None without one."""
    path = Path(run_dir) / FILE
    if not path.is_file():
        return None
    with path.open(newline="") as f:
        return {int(r["index"]): (float(r["y_true"]), float(r["y_pred"])) for r in csv.DictReader(f)
                if r["split"] == "val"}


def compare(task: str, before: Optional[dict], after: Optional[dict]) -> dict:
    """Validation error of `after` minus `before` (two read_val results) on the same samples, with its 95% interval
    (stats.paired_error_difference); {"note": ...} instead when the two did not predict the same samples."""
    from dlrun.report.stats import paired_error_difference

    if not before or not after:
        return {"note": f"no {FILE} to compare"}
    if before.keys() != after.keys() or any(before[i][0] != after[i][0] for i in before):
        return {"note": "not the same validation samples"}
    order = sorted(before)
    y = np.array([before[i][0] for i in order])
    return paired_error_difference(task, y, np.array([before[i][1] for i in order]),
                                   np.array([after[i][1] for i in order]))


def difference_text(vs: dict, task: Optional[str]) -> str:
    """'-4.4 pts [-6.1, -2.8]' (classification: percentage points) or '+0.0123 [-0.004, +0.03]' (RMSE)."""
    low, high = vs["interval"]
    if task == "classification":
        return f"{100 * vs['difference']:+.1f} pts [{100 * low:+.1f}, {100 * high:+.1f}]"
    return f"{vs['difference']:+.4g} [{low:+.4g}, {high:+.4g}]"


def verdict_text(vs: dict) -> str:
    """'lower (confirmed)', 'higher (confirmed)' or 'within noise'."""
    return f"{vs['confirmed']} (confirmed)" if vs["confirmed"] else "within noise"

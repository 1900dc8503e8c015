"""predictions.csv: every held-out sample's prediction, the figures of report.json reproduced from it."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from dlrun import config as c
from dlrun.pipeline import run
from tests.conftest import make_config


def _rows(run_dir) -> list[dict]:
    with (run_dir / "predictions.csv").open(newline="") as f:
        return list(csv.DictReader(f))


def test_classification_predictions_reproduce_the_reported_errors_sample_by_sample(tmp_path):
    report = run(make_config(split={"train_dev": 0.1}, report={"plots": False}), tmp_path, overrides=[]).report
    rows = _rows(tmp_path)
    assert report["files"]["predictions"] == str(tmp_path / "predictions.csv")
    names = [str(k) for k in range(10)]  # digits' classes
    for split in ("train_dev", "val", "test"):
        mine = [r for r in rows if r["split"] == split]
        metrics = report["metrics"][split]
        assert len(mine) == metrics["n"] and len({r["index"] for r in mine}) == metrics["n"]  # one row per sample
        wrong = sum(r["y_true"] != r["y_pred"] for r in mine)
        assert wrong / metrics["n"] == pytest.approx(metrics["error"])
        assert all(r["true_class"] == names[int(r["y_true"])] and r["predicted_class"] == names[int(r["y_pred"])]
                   for r in mine)
        assert all(0.1 <= float(r["confidence"]) <= 1 for r in mine)  # the largest of 10 probabilities
    assert not [r for r in rows if r["split"] == "train"]  # the held-out splits only
    held_out = {r["index"] for r in rows if r["split"] in ("val", "test")}
    assert len(held_out) == report["metrics"]["val"]["n"] + report["metrics"]["test"]["n"]  # disjoint rows of digits


def test_regression_predictions_reproduce_the_reported_rmse(tmp_path):
    cfg = make_config(dataset=c.SyntheticConfig(task="regression", n_samples=400), report={"plots": False})
    report = run(cfg, tmp_path, overrides=[]).report
    rows = [r for r in _rows(tmp_path) if r["split"] == "test"]
    assert set(rows[0]) == {"split", "index", "y_true", "y_pred"}
    residuals = np.array([float(r["y_true"]) - float(r["y_pred"]) for r in rows])
    assert np.sqrt(np.mean(residuals ** 2)) == pytest.approx(report["metrics"]["test"]["error"], rel=1e-5)

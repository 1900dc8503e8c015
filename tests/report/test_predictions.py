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
        # each sample's cross-entropy, whose mean is the split's reported loss
        assert np.mean([float(r["loss"]) for r in mine]) == pytest.approx(metrics["loss"], rel=1e-6)
        assert all(float(r["loss"]) >= 0 for r in mine)
    assert not [r for r in rows if r["split"] == "train"]  # the held-out splits only
    held_out = {r["index"] for r in rows if r["split"] in ("val", "test")}
    assert len(held_out) == report["metrics"]["val"]["n"] + report["metrics"]["test"]["n"]  # disjoint rows of digits


def test_regression_predictions_reproduce_the_reported_rmse(tmp_path):
    cfg = make_config(dataset=c.SyntheticConfig(task="regression", n_samples=400), report={"plots": False})
    report = run(cfg, tmp_path, overrides=[]).report
    rows = [r for r in _rows(tmp_path) if r["split"] == "test"]
    assert set(rows[0]) == {"split", "index", "y_true", "y_pred", "loss"}
    residuals = np.array([float(r["y_true"]) - float(r["y_pred"]) for r in rows])
    assert np.sqrt(np.mean(residuals ** 2)) == pytest.approx(report["metrics"]["test"]["error"], rel=1e-5)
    assert np.mean([float(r["loss"]) for r in rows]) == pytest.approx(report["metrics"]["test"]["loss"], rel=1e-6)


def test_read_val_gives_each_validation_samples_loss_and_reads_a_file_written_before_the_loss_column(tmp_path):
    from dlrun.report.predictions import compare, compare_loss, read_val

    (tmp_path / "new").mkdir()
    (tmp_path / "new" / "predictions.csv").write_text(
        "split,index,y_true,y_pred,loss,true_class,predicted_class,confidence\n"
        "val,4,1,1,0.25,b,b,0.8\nval,7,0,1,2.5,a,b,0.9\ntest,9,0,0,0.1,a,a,0.9\n")
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "predictions.csv").write_text(
        "split,index,y_true,y_pred,true_class,predicted_class,confidence\nval,4,1,0,b,a,0.6\nval,7,0,0,a,a,0.7\n")
    new, old = read_val(tmp_path / "new"), read_val(tmp_path / "old")
    assert new == {4: (1.0, 1.0, 0.25), 7: (0.0, 1.0, 2.5)} and new[7].loss == 2.5  # the validation rows only
    assert old == {4: (1.0, 0.0, None), 7: (0.0, 0.0, None)}
    assert compare("classification", old, new)["difference"] == 0  # one sample better, one worse: the error ties
    assert compare_loss(old, new) == {"note": "no per-sample loss in predictions.csv (written by an older dlrun)"}
    assert compare_loss(new, new)["difference"] == 0 and compare_loss(new, new)["confirmed"] is None


def test_the_loss_comparison_is_paired_and_matches_a_paired_t_interval_on_many_samples():
    """Past stats.BCA_MAX_SAMPLES samples, stats.mean_interval is Student's t on the differences: ttest_rel's."""
    from scipy.stats import ttest_rel

    from dlrun.report.predictions import Prediction, compare_loss

    rng = np.random.default_rng(0)
    n = 6000
    a = rng.exponential(0.5, n)
    b = a + rng.normal(0.01, 0.1, n)  # a small difference that only pairing sees: the losses vary 5 times more
    before = {i: Prediction(0.0, 0.0, x) for i, x in enumerate(a)}
    after = {i: Prediction(0.0, 0.0, x) for i, x in enumerate(b)}
    vs = compare_loss(before, after, confidence=0.9)
    ci = ttest_rel(b, a).confidence_interval(confidence_level=0.9)
    assert vs["interval"] == pytest.approx([ci.low, ci.high]) and vs["confirmed"] == "higher"
    assert vs["difference"] == pytest.approx(np.mean(b - a)) and vs["n"] == n

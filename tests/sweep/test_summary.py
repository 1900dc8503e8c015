"""The sweep summary's ranking metric: its interval from report.json, and the runner-up against the best job compared
on it sample by sample (predictions.csv's per-sample losses when the ranking is by val_loss)."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from dlrun.sweep.summary import write_summary


def _job(sweep, job, loss, interval=None, monitor="val_loss", evaluated=None, level=0.95, losses=None, wrong=30):
    """A finished job folder: report.json ranked by `monitor` = `loss` (metrics.val's figure of the evaluated weights
    `evaluated`, by default the same, with `interval`) and, with `losses` (n,), a classification predictions.csv with
    those per-sample losses and the first `wrong` samples misclassified."""
    folder = sweep / job
    folder.mkdir(parents=True)
    val = {"loss": 0.3, "error": 0.1, "error_interval": [0.07, 0.14]}
    name = "error" if monitor == "val_error" else "loss"  # train_loss: metrics.val.loss has an interval, not it
    if monitor.startswith("val_"):
        val[name] = loss if evaluated is None else evaluated
    if interval is not None:
        val[f"{name}_interval"] = interval
    report = {"run": {"overrides": [f"trainer.seed={job}"], "best_epoch": 3, "stop_reason": "patience",
                      "task": "classification", "interval_level": level,
                      "objective": {"monitor": monitor, "mode": "min", "value": loss}},
              "metrics": {"train": {"error": 0.0}, "val": val, "test": {"error": 0.12, "error_interval": [0.09, 0.16]}},
              "diagnosis": {"underfitting": {"detected": False, "severity": "none"}}}
    (folder / "report.json").write_text(json.dumps(report))
    if losses is not None:
        with (folder / "predictions.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "index", "y_true", "y_pred", "loss"])
            writer.writerows(["val", i, 0, int(i < wrong), f"{x:.8g}"] for i, x in enumerate(losses))


def test_the_ranking_metric_shows_report_jsons_interval_in_every_file(tmp_path):
    _job(tmp_path, "0", 0.35, [0.28, 0.44])
    _job(tmp_path, "1", 0.30, [0.25, 0.36])
    summary = write_summary(tmp_path)
    assert summary["jobs"][0]["objective_interval"] == [0.25, 0.36]  # summary.json: the job's loss_interval
    assert json.loads((tmp_path / "summary.json").read_text())["jobs"][1]["objective_interval"] == [0.28, 0.44]
    md = (tmp_path / "summary.md").read_text()
    assert "| 1 | `trainer.seed=1` | 0.3000 [0.2500, 0.3600] |" in md
    assert "| 0 | `trainer.seed=0` | 0.3500 [0.2800, 0.4400] |" in md
    assert "Errors and val_loss with their 95% intervals." in md
    assert "0.3000 [0.2500, 0.3600]" in (tmp_path / "summary.html").read_text()
    with open(tmp_path / "summary.csv") as f:
        best = next(csv.DictReader(f))
    assert (best["job"], best["val_loss"], best["val_loss_low"], best["val_loss_high"]) == ("1", "0.3", "0.25", "0.36")
    # and the table printed at the end of the sweep
    from rich.console import Console

    from dlrun.console import sweep_table

    terminal = Console(record=True, width=200)
    sweep_table(summary, str(tmp_path), console=terminal)
    printed = terminal.export_text()
    assert "0.3000 [0.2500, 0.3600]" in printed
    assert "0.1200 [0.0900, 0.1600]" in printed  # the test error with its interval too


def test_a_value_too_small_for_four_decimals_is_not_printed_as_zero():
    from dlrun.console import _interval
    from dlrun.sweep.summary import fmt, with_interval

    assert fmt(2.741e-05) == "2.74e-05" and fmt(0.0) == "0.0000" and fmt(0.1234) == "0.1234"
    assert with_interval(2.741e-05, [2.512e-05, 2.99e-05]) == "2.74e-05 [2.51e-05, 2.99e-05]"
    assert _interval([2.512e-05, 2.99e-05]) == "[2.51e-05, 2.99e-05]" and _interval([0.011, 0.043]) == "[0.011, 0.043]"


def test_a_metric_without_a_known_interval_is_shown_bare(tmp_path):
    _job(tmp_path / "old", "0", 0.35)  # a report written before metrics.val.loss_interval
    _job(tmp_path / "old", "1", 0.30)
    write_summary(tmp_path / "old", plots=False)
    md = (tmp_path / "old" / "summary.md").read_text()
    assert "| 1 | `trainer.seed=1` | 0.3000 |" in md and "(val_loss without:" in md
    # train_loss: a running mean over the training batches, not metrics.train: no interval, even beside one
    _job(tmp_path / "train", "0", 0.05, [0.28, 0.44], monitor="train_loss")
    _job(tmp_path / "train", "1", 0.04, [0.25, 0.36], monitor="train_loss")
    summary = write_summary(tmp_path / "train", plots=False)
    assert summary["jobs"][0]["objective_interval"] is None
    md = (tmp_path / "train" / "summary.md").read_text()
    assert "| 1 | `trainer.seed=1` | 0.0400 |" in md and "train_loss, a mean over each epoch's training" in md


def test_a_ranked_value_that_is_not_the_evaluated_weights_gets_no_interval_and_says_whose_it_is(tmp_path):
    """A report from an older dlrun, whose objective was the best value recorded in training whatever the weights
    kept (early_stop.restore_best=false: the last epoch's were evaluated); the interval belongs to the latter."""
    _job(tmp_path, "0", 0.30, [0.29, 0.45], evaluated=0.36)
    _job(tmp_path, "1", 0.35, [0.28, 0.44])
    summary = write_summary(tmp_path, plots=False)
    best = summary["jobs"][0]
    assert best["job"] == "0" and best["objective_interval"] is None
    assert best["objective_evaluated"] == {"value": 0.36, "interval": [0.29, 0.45]}
    md = (tmp_path / "summary.md").read_text()
    assert "| 0 | `trainer.seed=0` | 0.3000 (in training) |" in md
    assert "ranked the best value recorded in training): job 0's have 0.3600 [0.2900, 0.4500]." in md
    with open(tmp_path / "summary.csv") as f:
        row = next(csv.DictReader(f))
    assert (row["val_loss"], row["val_loss_low"], row["val_loss_high"]) == ("0.3", "", "")


def test_a_diverged_job_without_a_ranked_value_still_shows_its_evaluated_loss(tmp_path):
    """A job that diverged after its best epoch has no objective (null), but its restored weights were evaluated:
    the summary showed 'n/a' and nothing below the table, though it compared that loss with the best job's."""
    _job(tmp_path, "0", 0.13, [0.07, 0.23])
    _job(tmp_path, "1", None, [4.60, 6.06], evaluated=5.28)
    summary = write_summary(tmp_path, plots=False)
    diverged = next(r for r in summary["jobs"] if r["job"] == "1")
    assert summary["jobs"][0]["job"] == "0"
    assert diverged["objective_evaluated"] == {"value": 5.28, "interval": [4.60, 6.06]}
    md = (tmp_path / "summary.md").read_text()
    assert "job 1's have 5.2800 [4.6000, 6.0600]" in md
    assert "best first." in md and "an interrupted job" not in md  # none was: no word about one


def test_the_runner_up_is_compared_on_the_per_sample_validation_losses_when_ranked_by_val_loss(tmp_path):
    rng = np.random.default_rng(0)
    base = rng.exponential(0.3, 300)  # skewed, as cross-entropies are
    # the runner-up: every sample's loss higher by 0.1 on average, with the same errors (its val error ties)
    _job(tmp_path / "clear", "0", 0.3 + 0.1, [0.35, 0.47], losses=base + 0.1 + rng.normal(0, 0.05, 300))
    _job(tmp_path / "clear", "1", 0.3, [0.25, 0.36], losses=base)
    vs = write_summary(tmp_path / "clear", plots=False)["runner_up"]
    assert (vs["job"], vs["against"], vs["metric"], vs["n"], vs["confirmed"]) == ("0", "1", "val_loss", 300, "higher")
    assert vs["interval"][0] > 0.08 and vs["interval"][1] < 0.12 and vs["difference"] == pytest.approx(0.1, abs=0.01)
    assert vs["error"]["difference"] == 0 and vs["error"]["confirmed"] is None  # the error comparison, beside it
    md = (tmp_path / "clear" / "summary.md").read_text()
    assert ("Job 0 (second) against job 1 (best), validation loss on the same 300 samples: mean per-sample "
            "difference +0.") in md
    assert "(95% interval), higher (confirmed): the best job's lower validation loss is confirmed." in md
    assert "On validation error: +0.0 pts [-1.0, +1.0], within noise." in md  # the same errors: an interval still

    # two identical jobs (same seed twice): nothing to tell apart
    _job(tmp_path / "same", "0", 0.3, [0.25, 0.36], losses=base)
    _job(tmp_path / "same", "1", 0.3, [0.25, 0.36], losses=base)
    vs = write_summary(tmp_path / "same", plots=False)["runner_up"]
    assert vs["metric"] == "val_loss" and vs["difference"] == 0 and vs["confirmed"] is None
    md = (tmp_path / "same" / "summary.md").read_text()
    assert "within noise: the sweep cannot tell these two apart on validation loss." in md
    html = (tmp_path / "same" / "summary.html").read_text()
    assert "the sweep cannot tell these two apart on validation loss" in html


def test_the_runner_up_comparison_is_at_the_jobs_interval_level(tmp_path):
    rng = np.random.default_rng(1)
    base = rng.exponential(0.3, 200)
    # a difference a 95% interval cannot confirm (its mean is 1.6 standard errors) and an 80% one can
    noise = rng.normal(0, 0.2, 200)
    noise = noise - noise.mean() + 1.6 * noise.std(ddof=1) / np.sqrt(200)
    for sweep, level in (("95", 0.95), ("80", 0.8)):
        _job(tmp_path / sweep, "0", 0.32, level=level, losses=base + noise)
        _job(tmp_path / sweep, "1", 0.30, level=level, losses=base)
    wide = write_summary(tmp_path / "95", plots=False)["runner_up"]
    narrow = write_summary(tmp_path / "80", plots=False)["runner_up"]
    assert (wide["level"], narrow["level"]) == (0.95, 0.8)
    assert wide["confirmed"] is None and narrow["confirmed"] == "higher"
    assert "(80% interval), higher (confirmed)" in (tmp_path / "80" / "summary.md").read_text()


def test_an_older_predictions_csv_without_losses_still_gives_the_error_comparison(tmp_path):
    for job, wrong in (("0", 60), ("1", 30)):
        _job(tmp_path, job, 0.3 + int(job == "0") / 10, [0.2, 0.4], losses=np.zeros(300), wrong=wrong)
        path = tmp_path / job / "predictions.csv"
        rows = [line.rsplit(",", 1)[0] for line in path.read_text().splitlines()]  # drop the loss column
        path.write_text("\n".join(rows) + "\n")
    vs = write_summary(tmp_path, plots=False)["runner_up"]
    assert vs["note"] == "no per-sample loss in predictions.csv (written by an older dlrun)"
    assert vs["error"]["confirmed"] == "higher" and vs["error"]["difference"] == pytest.approx(0.1)
    md = (tmp_path / "summary.md").read_text()
    assert ("validation loss: no per-sample loss in predictions.csv (written by an older dlrun); compare their "
            "intervals. On validation error: +10.0 pts [") in md


def test_when_ranked_by_val_error_the_runner_up_keeps_the_paired_error_comparison(tmp_path):
    _job(tmp_path, "0", 0.12, [0.08, 0.16], monitor="val_error", losses=np.zeros(300), wrong=36)
    _job(tmp_path, "1", 0.1, [0.07, 0.14], monitor="val_error", losses=np.ones(300), wrong=30)
    summary = write_summary(tmp_path, plots=False)
    vs = summary["runner_up"]
    assert summary["rank_by"]["metric"] == "val_error" and vs["metric"] == "val_error" and "error" not in vs
    assert vs["discordant"] == 6 and vs["confirmed"] == "higher"  # 6 of 6 discordant samples one way
    md = (tmp_path / "summary.md").read_text()
    assert "validation error on the same 300 samples: +2.0 pts [" in md


@pytest.mark.slow
def test_a_real_sweep_ranks_by_val_loss_with_each_jobs_loss_interval_and_compares_the_two_on_it(tmp_path):
    """The monitored value (the best epoch's val_loss in training) is the restored weights' metrics.val.loss, so the
    summary gives it that loss's interval, and predictions.csv's losses average to it."""
    from dlrun.report.predictions import read_val
    from tests.conftest import run_dlrun

    sweep = tmp_path / "sweep"
    done = run_dlrun(["-m", "trainer.seed=0,1", "trainer.max_epochs=3", "trainer.progress=false", "report.plots=false",
                      "model.hidden=[16]", "trainer.tensorboard=false", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    md = (sweep / "summary.md").read_text()
    for row in summary["jobs"]:
        val = json.loads((sweep / row["job"] / "report.json").read_text())["metrics"]["val"]
        assert row["objective"] == pytest.approx(val["loss"], rel=1e-5) and row["objective_evaluated"] is None
        assert row["objective_interval"] == val["loss_interval"]
        assert f"| {row['objective']:.4f} [{val['loss_interval'][0]:.4f}, {val['loss_interval'][1]:.4f}] |" in md
        losses = [p.loss for p in read_val(sweep / row["job"]).values()]
        assert np.mean(losses) == pytest.approx(val["loss"], rel=1e-6)
    vs = summary["runner_up"]
    assert vs["metric"] == "val_loss" and vs["n"] == len(losses) and vs["level"] == 0.95
    assert "validation loss on the same" in md

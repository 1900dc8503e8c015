"""The sweep summary: jobs sorted by validation error, verdicts per job, missing jobs named."""

from __future__ import annotations

import json

import pytest

from dlrun.sweep.callback import summarize, write_summary


def _report(overrides, val, verdict="no"):
    finding = {"detected": verdict != "no", "severity": "none" if verdict == "no" else verdict}
    return {"run": {"overrides": overrides, "best_epoch": 3, "stop_reason": "patience"},
            "metrics": {"train": {"error": 0.0}, "val": {"error": val}, "test": {"error": None if val is None else val + 0.01}},
            "diagnosis": {"underfitting": finding, "overfitting": {"detected": False, "severity": "none"},
                          "distribution_shift": {"detected": False, "severity": "none"}}}


def test_jobs_are_sorted_by_validation_error():
    summary = summarize({"0": _report(["reg.dropout=0"], 0.05, "mild"), "1": _report(["reg.dropout=0.5"], 0.02),
                         "2": _report(["reg.dropout=0.9"], None)})
    assert [r["job"] for r in summary["jobs"]] == ["1", "0", "2"] and summary["best"] == "1"
    assert summary["jobs"][1]["verdicts"]["underfitting"] == "mild"


def test_write_summary_reads_every_job_folder(tmp_path):
    for i, val in enumerate([0.1, 0.03]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "report.json").write_text(json.dumps(_report([f"reg.dropout={i}"], val)))
    (tmp_path / "2").mkdir()  # a job that failed before writing its report
    summary = write_summary(tmp_path)
    assert summary["best"] == "1" and summary["missing"] == ["2"]
    md = (tmp_path / "summary.md").read_text()
    assert md.index("reg.dropout=1") < md.index("reg.dropout=0") and "without a report.json" in md
    assert json.loads((tmp_path / "summary.json").read_text())["jobs"][0]["job"] == "1"


def test_failed_jobs_are_listed_with_their_overrides_error_and_status(tmp_path):
    from dlrun.sweep.callback import record_failure

    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "report.json").write_text(json.dumps(_report(["reg.dropout=0"], 0.05)))
    record_failure(tmp_path / "1", ["reg.dropout=0.5", "trainer.resume=/x"], "trainer.resume='/x': no checkpoint",
                   2, "user error")
    summary = write_summary(tmp_path)
    assert [r["job"] for r in summary["jobs"]] == ["0"] and summary["missing"] == []
    assert summary["failed"] == [{"job": "1", "overrides": ["reg.dropout=0.5", "trainer.resume=/x"],
                                  "error": "trainer.resume='/x': no checkpoint", "exit_status": 2,
                                  "kind": "user error", "params": {"reg.dropout": "0.5", "trainer.resume": "/x"}}]
    md = (tmp_path / "summary.md").read_text()
    assert "## 1 failed job" in md and "| 1 | `reg.dropout=0.5 trainer.resume=/x` | 2 | trainer.resume='/x'" in md


def _job(tmp_path, job, overrides, val, val_loss, test=None, monitor="val_loss", mode="min"):
    report = _report(overrides, val)
    report["run"]["objective"] = {"monitor": monitor, "mode": mode, "value": val_loss}
    report["metrics"]["test"]["error"] = test
    (tmp_path / job).mkdir(parents=True)
    (tmp_path / job / "report.json").write_text(json.dumps(report))


def test_a_2x2_grid_is_ranked_by_the_monitored_metric_with_one_column_and_one_plot_per_swept_key(tmp_path):
    import csv

    grid = [("reg.dropout=0", "optim.lr=0.001"), ("reg.dropout=0", "optim.lr=0.1"),
            ("reg.dropout=0.5", "optim.lr=0.001"), ("reg.dropout=0.5", "optim.lr=0.1")]
    # val_loss (what early stopping monitored) and val error disagree on the best job: the summary follows val_loss,
    # as an Optuna sweeper minimising the returned objective does
    for i, (dropout, lr) in enumerate(grid):
        _job(tmp_path, str(i), [dropout, lr, "trainer.max_epochs=3"], val=[0.05, 0.2, 0.04, 0.3][i],
             val_loss=[0.3, 0.9, 0.35, 1.2][i])
    summary = write_summary(tmp_path)
    assert summary["rank_by"] == {"metric": "val_loss", "mode": "min"}
    assert summary["swept"] == ["optim.lr", "reg.dropout"]  # trainer.max_epochs is the same in every job
    assert [r["job"] for r in summary["jobs"]] == ["0", "2", "1", "3"] and summary["best"] == "0"
    with open(tmp_path / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [(r["job"], r["optim.lr"], r["reg.dropout"], r["val_loss"]) for r in rows][:2] == \
        [("0", "0.001", "0", "0.3"), ("2", "0.001", "0.5", "0.35")]
    html = (tmp_path / "summary.html").read_text()
    assert html.count('src="data:image/png;base64,') == 2 and "against optim.lr" in html
    assert "dlrun reg.dropout=0 optim.lr=0.001 trainer.max_epochs=3" in html  # the best job alone, as a command
    assert "<b>val_loss</b> (min)" in html and "http" not in html.replace("http-equiv", "")  # self-contained


def test_a_maximised_monitor_ranks_the_largest_first_and_mixed_monitors_fall_back_to_val_error(tmp_path):
    _job(tmp_path / "a", "0", ["x=1"], val=0.1, val_loss=0.5, monitor="val_accuracy", mode="max")
    _job(tmp_path / "a", "1", ["x=2"], val=0.2, val_loss=0.9, monitor="val_accuracy", mode="max")
    assert write_summary(tmp_path / "a", plots=False)["best"] == "1"
    _job(tmp_path / "b", "0", ["early_stop.monitor=val_loss"], val=0.1, val_loss=0.5)
    _job(tmp_path / "b", "1", ["early_stop.monitor=train_loss"], val=0.2, val_loss=0.01, monitor="train_loss")
    summary = write_summary(tmp_path / "b", plots=False)
    assert summary["rank_by"]["metric"] == "val_error" and summary["best"] == "0"


def test_k_fold_sweeps_get_the_mean_and_std_across_folds_of_each_setting(tmp_path):
    errors = {"0": [0.10, 0.12, 0.14], "0.5": [0.05, 0.07, 0.06]}
    job = 0
    for dropout, values in errors.items():
        for fold, value in enumerate(values):
            _job(tmp_path, str(job), ["split.folds=3", f"split.fold={fold}", f"reg.dropout={dropout}"],
                 val=value, val_loss=value * 10, test=value + 0.01)
            job += 1
    summary = write_summary(tmp_path, plots=False)
    best, worst = summary["folds"]
    assert best["setting"] == {"reg.dropout": "0.5"} and best["folds"] == 3 and best["jobs"] == ["3", "4", "5"]
    assert best["val_error_mean"] == pytest.approx(0.06) and best["val_error_std"] == pytest.approx(0.01)
    assert worst["ranked_mean"] == pytest.approx(1.2) and worst["test_error_std"] == pytest.approx(0.02)
    assert "0.0600 ± 0.0100" in (tmp_path / "summary.md").read_text()


def test_k_fold_groups_with_different_monitors_are_compared_on_the_summary_s_ranking_metric(tmp_path):
    """A sweep over early_stop.monitor ranks by val_error: each setting's mean is of val_error too, not of each
    job's own monitor (a val_loss of 0.3 is not better than a val_error of 0.1)."""
    job = 0
    for monitor, val, monitored in (("val_loss", 0.2, 0.3), ("val_error", 0.1, 0.1)):
        for fold in range(2):
            _job(tmp_path, str(job), ["split.folds=2", f"split.fold={fold}", f"early_stop.monitor={monitor}"],
                 val=val + fold / 100, val_loss=monitored + fold / 100, monitor=monitor)
            job += 1
    summary = write_summary(tmp_path, plots=False)
    best, worst = summary["folds"]
    assert summary["rank_by"]["metric"] == "val_error"
    assert best["setting"] == {"early_stop.monitor": "val_error"} and best["ranked_mean"] == pytest.approx(0.105)
    assert worst["ranked_mean"] == pytest.approx(0.205) and worst["ranked_std"] == pytest.approx(0.00707, abs=1e-5)
    assert "| `early_stop.monitor=val_loss` | 2 | 0.2050 ± 0.0071 |" in (tmp_path / "summary.md").read_text()


def test_dlrun_summary_rebuilds_and_prints_the_summary_of_a_sweep_folder(tmp_path, capsys):
    from dlrun.cli import summary_main

    for i, (val, loss) in enumerate([(0.2, 0.9), (0.1, 0.4)]):
        _job(tmp_path, str(i), [f"reg.dropout={i}"], val=val, val_loss=loss)
        (tmp_path / str(i) / ".hydra").mkdir()
    summary_main([str(tmp_path)])
    err = capsys.readouterr().err
    assert "ranked by val_loss (min)" in err and f"summary: {tmp_path}/summary.html" in err
    assert err.index("0.4000") < err.index("0.9000")  # best first
    assert json.loads((tmp_path / "summary.json").read_text())["best"] == "1"
    with pytest.raises(SystemExit) as stop:  # not a sweep folder: one line, exit 2
        summary_main([str(tmp_path / "0")])
    assert stop.value.code == 2 and "is not a sweep folder" in capsys.readouterr().err


def test_the_summary_gives_each_error_its_interval_and_compares_the_two_best_jobs_sample_by_sample(tmp_path):
    import csv

    def job(name, val, wrong, interval):
        folder = tmp_path / name
        folder.mkdir()
        report = _report([f"reg.dropout={name}"], val)
        report["run"]["task"] = "classification"
        report["metrics"]["val"]["error_interval"] = interval
        (folder / "report.json").write_text(json.dumps(report))
        with (folder / "predictions.csv").open("w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["split", "index", "y_true", "y_pred"])
            writer.writerows(["val", i, 0, int(i < wrong)] for i in range(300))

    job("0", 0.10, 30, [0.07, 0.14])
    job("1", 0.09, 27, [0.06, 0.13])  # best by 3 samples of 300: within noise
    summary = write_summary(tmp_path)
    vs = summary["runner_up"]
    assert vs["job"] == "0" and vs["against"] == "1" and vs["difference"] == pytest.approx(3 / 300)
    assert vs["confirmed"] is None
    md = (tmp_path / "summary.md").read_text()
    assert "0.0900 [0.0600, 0.1300]" in md  # the best job's val error and its interval
    assert ("Job 0 (second) against job 1 (best), validation error on the same 300 samples: +1.0 pts [" in md
            and "within noise: the sweep cannot tell these two apart" in md)
    assert "the sweep cannot tell these two apart" in (tmp_path / "summary.html").read_text()
    with open(tmp_path / "summary.csv") as f:
        best = next(csv.DictReader(f))
    assert (best["job"], best["val_error_low"], best["val_error_high"]) == ("1", "0.06", "0.13")
    (tmp_path / "0" / "predictions.csv").write_text("split,index,y_true,y_pred\nval,0,0,0\n")
    assert write_summary(tmp_path)["runner_up"]["note"] == "not the same validation samples"


def test_an_interrupted_job_is_never_the_best_and_a_job_never_started_is_missing(tmp_path, capsys):
    """A killed sweep, summarised: job 1 stopped mid-training with the lowest loss so far, job 2 never started."""
    from dlrun.cli import summary_main
    from dlrun.sweep.summary import PLAN

    for i, (val, loss) in enumerate([(0.2, 0.9), (0.05, 0.1)]):
        _job(tmp_path, str(i), [f"reg.dropout={i}", "trainer.resume=auto"], val=val, val_loss=loss)
        (tmp_path / str(i) / ".hydra").mkdir()
    report = json.loads((tmp_path / "1" / "report.json").read_text())
    report["run"].update(interrupted=True, stop_reason="interrupted")
    (tmp_path / "1" / "report.json").write_text(json.dumps(report))
    (tmp_path / PLAN).write_text(json.dumps({"jobs": [[f"reg.dropout={i}"] for i in range(3)]}))
    with pytest.raises(SystemExit) as stop:  # the sweep is not whole: a script learns it from the exit status
        summary_main([str(tmp_path)])
    assert stop.value.code == 3
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["best"] == "0" and [r["job"] for r in summary["jobs"]] == ["0", "1"]
    assert [r["status"] for r in summary["jobs"]] == ["done", "interrupted"] and summary["missing"] == ["2"]
    assert summary["runner_up"] is None  # a partial training is not compared with the best job
    assert "trainer.resume" not in summary["jobs"][0]["command"]  # the best job alone is a new run
    assert "trainer.resume" not in summary["swept"]  # how the jobs ran, not a swept setting
    err = capsys.readouterr().err
    assert "sweep: 3 jobs: 1 finished, 1 interrupted, 1 without a report" in err and "never started): job 2" in err
    md = (tmp_path / "summary.md").read_text()
    assert md.startswith("# dlrun sweep summary\n\n3 jobs: 1 finished, 1 interrupted, 1 without a report;")
    assert "3 jobs: 1 finished" in (tmp_path / "summary.html").read_text()


def test_the_summary_gives_the_intervals_level_the_jobs_used(tmp_path):
    for i in range(2):
        _job(tmp_path, str(i), [f"reg.dropout={i}"], val=0.1 + i / 10, val_loss=0.5 + i)
        report = json.loads((tmp_path / str(i) / "report.json").read_text())
        report["run"]["interval_level"] = 0.8  # report.alpha=0.2
        report["metrics"]["val"].update(loss=0.5 + i, loss_interval=[0.4 + i, 0.6 + i])
        (tmp_path / str(i) / "report.json").write_text(json.dumps(report))
    write_summary(tmp_path)
    assert "Errors and val_loss with their 80% intervals." in (tmp_path / "summary.md").read_text()
    assert "Errors and val_loss with their 80% intervals." in (tmp_path / "summary.html").read_text()

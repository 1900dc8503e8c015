"""Whole runs across the model zoo and the tasks: image models on digits, sequences, regression, the CLI."""

from __future__ import annotations

import json

import pytest

from dlrun import config as c
from dlrun.pipeline import rebuild_report, run
from tests.conftest import make_config, run_dlrun

pytestmark = pytest.mark.slow


@pytest.mark.parametrize("model", [c.LeNetConfig(), c.VGGConfig(width=8, fc=32), c.ResNetConfig(width=8),
                                   c.AlexNetConfig(width=8, fc=32), c.InceptionConfig(width=8, blocks=2),
                                   c.RecurrentConfig(family="gru", hidden_size=32)])
def test_every_family_trains_on_digits_and_reports(tmp_path, model):
    result = run(make_config(model=model, trainer={"max_epochs": 4}, optim={"lr": 3e-3}, reg={"dropout": 0.2}), tmp_path,
                 overrides=[])
    report = result.report
    assert report["run"]["model"] == model.family and report["run"]["epochs_run"] == 4
    assert report["metrics"]["val"]["error"] < 0.8  # chance is 0.9
    assert (tmp_path / "report.html").is_file()


def test_regression_on_diabetes(tmp_path):
    cfg = make_config(dataset=c.SklearnDatasetConfig(name="diabetes"), model=c.MLPConfig(hidden=[32]),
                      trainer={"max_epochs": 30}, report={"target_error": 30.0})
    report = run(cfg, tmp_path, overrides=["dataset=diabetes", "report.target_error=30"]).report
    assert report["run"]["task"] == "regression"
    rmse = report["metrics"]["test"]["error"]
    chance = report["baselines"]["chance_error"]
    assert 30 < rmse < chance  # RMSE in the target's units (disease progression, std ~77), better than the mean
    test = report["metrics"]["test"]
    assert test["rmse"] == rmse and 0 < test["mae"] < rmse and 0.1 < test["r2"] < 1
    assert test["loss_interval"][0] < test["loss"] < test["loss_interval"][1]  # every number with its uncertainty
    assert (tmp_path / "plots" / "residuals.png").is_file() and not (tmp_path / "plots" / "confusion_matrix.png").exists()
    assert "ks_prediction" in report["evidence"]["shift_tests"]
    # the target error is an RMSE in the target's units too: the avoidable bias and the variance are RMSE differences
    dec, metrics = report["decomposition"], report["metrics"]
    assert dec["avoidable_bias"] == pytest.approx(metrics["train"]["error"] - 30.0)
    assert dec["variance"] == pytest.approx(metrics["val"]["error"] - metrics["train"]["error"])
    markdown = (tmp_path / "report.md").read_text()
    assert "| target error | 30 | yours: exact |" in markdown
    assert "| split | n | loss | loss interval | RMSE | RMSE interval |" in markdown
    baselines = report["baselines"]
    for key in ("chance_error", "simple_train_error", "simple_val_error"):  # each baseline with its interval
        assert baselines["intervals"][key][0] <= baselines[key] <= baselines["intervals"][key][1]
    line = next(line for line in markdown.splitlines() if line.startswith("Baselines: "))
    assert line.count("[") == 3 and "on validation" in line, line
    # what the verdicts were judged at, with the tolerance in the target's units too
    assert "Verdicts at 95% confidence (report.alpha=0.05) against a tolerance of " in markdown
    assert f"{report['judged']['tolerance_in_units']:.4g} of RMSE, 0.05 of the training targets' std" in markdown
    assert report["judged"]["tolerance_in_units"] == pytest.approx(0.05 * 77, rel=0.1)  # diabetes targets: std ~77


def test_lstm_on_the_synthetic_sequence_task(tmp_path):
    cfg = make_config(dataset=c.SyntheticConfig(task="sequence", n_samples=600, n_features=1),
                      model=c.RecurrentConfig(family="lstm", hidden_size=32), trainer={"max_epochs": 15},
                      optim={"lr": 3e-3})
    report = run(cfg, tmp_path, overrides=[]).report
    assert report["metrics"]["val"]["error"] < 0.5  # 3 classes: chance is ~0.67


def test_rebuilding_the_report_gives_the_same_figures_and_new_thresholds(tmp_path):
    cfg = make_config(trainer={"max_epochs": 3})
    first = run(cfg, tmp_path, overrides=[]).report
    cfg.report.tolerance = 0.001
    again = rebuild_report(cfg, tmp_path, overrides=["report.tolerance=0.001"])
    assert again["metrics"] == first["metrics"]
    assert again["run"]["stop_reason"] == first["run"]["stop_reason"]
    assert json.loads((tmp_path / "report.json").read_text())["run"]["overrides"] == ["report.tolerance=0.001"]


def test_a_run_killed_between_checkpoints_is_rebuilt_as_interrupted_not_finished(tmp_path, monkeypatch):
    """SIGKILL leaves the last periodic checkpoint and no report: dlrun-report must not call that run finished
    (trainer.resume=auto would then skip it for ever)."""
    import shutil

    from dlrun.engine import checkpoint

    reasons, real = [], checkpoint.save

    def spy(path, state):
        real(path, state)
        if path.name == "last.pt":
            reasons.append(state["stop_reason"])
            shutil.copy(path, tmp_path / f"last_epoch{state['epoch']}.pt")

    monkeypatch.setattr(checkpoint, "save", spy)
    cfg = make_config(trainer={"max_epochs": 3, "checkpoint_every": 0.0})
    run(cfg, tmp_path / "whole", overrides=[])
    assert len(reasons) > 2 and set(reasons[:-1]) == {None} and reasons[-1] == "max_epochs"  # while running: none
    killed = tmp_path / "killed"
    shutil.copytree(tmp_path / "whole", killed)
    shutil.copy(tmp_path / "last_epoch2.pt", killed / "checkpoints" / "last.pt")  # as the kill left it
    for name in ("report.json", "report.md", "report.html"):
        (killed / name).unlink()
    report = rebuild_report(cfg, killed, overrides=[])
    assert report["run"]["stop_reason"] == "interrupted" and report["run"]["interrupted"] is True
    assert f"trainer.resume={killed}" in report["run"]["resume_command"]


def test_cli_vgg_with_dropout(tmp_path):
    run_dir = tmp_path / "run"
    done = run_dlrun(["model=vgg", "reg.dropout=0.5", "trainer.max_epochs=1", f"hydra.run.dir={run_dir}",
                      "trainer.progress=false"], tmp_path)
    assert done.returncode == 0, done.stderr
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["model"] == "vgg" and report["run"]["overrides"] == ["model=vgg", "reg.dropout=0.5",
                                                                              "trainer.max_epochs=1",
                                                                              "trainer.progress=false"]
    # the next commands start from this run's own overrides; one that changes the model says so at the end
    for finding in report["diagnosis"].values():
        for action in finding["actions"]:
            # (a linear model without the dropout the underfitting finding suspects, when it suspects it)
            assert action["command"].startswith("dlrun model=vgg") or \
                "trainer.progress=false model=mlp 'model.hidden=[]'" in action["command"]


def test_cli_dlrun_report(tmp_path):
    run_dir = tmp_path / "run"
    assert run_dlrun(["trainer.max_epochs=2", f"hydra.run.dir={run_dir}", "trainer.progress=false",
                      "model.hidden=[32]"], tmp_path).returncode == 0
    before = json.loads((run_dir / "report.json").read_text())
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", "from dlrun.cli import report_main; report_main()", str(run_dir),
                           "report.tolerance=0.001"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    after = json.loads((run_dir / "report.json").read_text())
    assert after["metrics"] == before["metrics"]
    assert "report.tolerance=0.001" in after["run"]["overrides"]
    bad = subprocess.run([sys.executable, "-c", "from dlrun.cli import report_main; report_main()", str(run_dir),
                          "optim.lr=1"], capture_output=True, text=True, cwd=tmp_path)
    assert bad.returncode == 2 and "only report.* keys" in bad.stderr and "Traceback" not in bad.stderr

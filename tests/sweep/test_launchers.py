"""Sweeps on Hydra's real launchers and sweepers, end to end on tiny runs: joblib (parallel jobs on one machine),
submitit_local (each job in its own process, as on Slurm) and the Optuna sweeper (dlrun's hparams_search preset)."""

from __future__ import annotations

import json

import pytest
import yaml

from tests.conftest import run_dlrun

pytestmark = pytest.mark.slow
TINY = ["trainer.max_epochs=2", "trainer.progress=false", "report.plots=false", "model.hidden=[16]",
        "trainer.tensorboard=false"]


def _two_reports_and_a_summary(sweep):
    assert sorted(p.parent.name for p in sweep.glob("*/report.json")) == ["0", "1"]
    summary = json.loads((sweep / "summary.json").read_text())
    assert sorted(r["job"] for r in summary["jobs"]) == ["0", "1"] and not summary["failed"] and not summary["missing"]
    assert summary["swept"] == ["reg.dropout"] and (sweep / "summary.html").is_file()


@pytest.mark.parametrize("launcher", ["joblib", "submitit_local"])
def test_a_two_job_sweep_on_a_real_launcher_writes_both_reports_and_the_summary(tmp_path, launcher):
    pytest.importorskip({"joblib": "hydra_plugins.hydra_joblib_launcher",
                         "submitit_local": "hydra_plugins.hydra_submitit_launcher"}[launcher])
    sweep = tmp_path / "sweep"
    extra = ["hydra.launcher.n_jobs=2"] if launcher == "joblib" else ["hydra.launcher.timeout_min=10"]
    done = run_dlrun(["-m", f"hydra/launcher={launcher}", *extra, "reg.dropout=0,0.5", *TINY,
                      f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr
    _two_reports_and_a_summary(sweep)


def test_a_failing_job_on_joblib_does_not_lose_the_other(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    done = run_dlrun(["-m", "hydra/launcher=joblib", "hydra.launcher.n_jobs=2",
                      f"trainer.resume={tmp_path / 'nothing'},null", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 3 and "Traceback" not in done.stderr, done.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert [r["job"] for r in summary["jobs"]] == ["1"] and [r["job"] for r in summary["failed"]] == ["0"]


def test_optuna_preset_survives_a_diverging_trial_and_agrees_with_the_summary_on_the_best_job(tmp_path):
    pytest.importorskip("hydra_plugins.hydra_optuna_sweeper")
    sweep = tmp_path / "sweep"
    # SGD at lr=1e9 diverges (NaN loss); seed 0 of the TPE sampler's random start draws both learning rates
    done = run_dlrun(["-m", "hparams_search=optuna", "hydra.sweeper.n_trials=3", "optim=sgd",
                      "optim.lr=choice(0.01,1e9)", *TINY, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr
    reports = {p.parent.name: json.loads(p.read_text()) for p in sweep.glob("*/report.json")}
    assert len(reports) == 3
    diverged = [job for job, r in reports.items() if r["run"]["stop_reason"] == "diverged"]
    assert diverged, "no trial diverged: the test no longer covers a diverging trial"
    assert all(reports[job]["run"]["objective"]["value"] is None for job in diverged)  # scored as the worst (inf)
    summary = json.loads((sweep / "summary.json").read_text())
    assert summary["rank_by"] == {"metric": "val_loss", "mode": "min"}
    assert summary["jobs"][-1]["job"] in diverged
    optuna = yaml.safe_load((sweep / "optimization_results.yaml").read_text())
    best = summary["jobs"][0]
    assert optuna["best_value"] == pytest.approx(best["objective"])
    assert optuna["best_params"]["optim.lr"] == pytest.approx(float(best["params"]["optim.lr"]))

"""Exit codes for scripts: a diverged run and a report.fail_on gate exit non-zero with their report written."""

from __future__ import annotations

import json

import pytest

from dlrun.errors import EXIT_DIVERGED, EXIT_VERDICT
from dlrun.pipeline import exit_status
from tests.conftest import run_dlrun

QUICK = ["trainer.progress=false", "report.plots=false", "trainer.tensorboard=false", "model.hidden=[16]"]


def _report(stop_reason="patience", **fired):
    return {"run": {"stop_reason": stop_reason},
            "diagnosis": {name: {"detected": name in fired, "severity": fired.get(name, "none")}
                          for name in ("underfitting", "overfitting", "data_mismatch", "distribution_shift")}}


def test_exit_status_reads_the_stop_reason_and_the_gate():
    assert exit_status(_report(), []) == 0
    assert exit_status(_report(overfitting="mild"), []) == 0  # a verdict alone is not a failure
    assert exit_status(_report(overfitting="mild"), ["overfitting"]) == EXIT_VERDICT
    assert exit_status(_report(overfitting="mild"), ["distribution_shift"]) == 0
    assert exit_status(_report("diverged", underfitting="severe"), ["underfitting"]) == EXIT_DIVERGED
    assert exit_status(_report("divergence_threshold"), []) == EXIT_DIVERGED
    assert exit_status({}, ["overfitting"]) == 0  # a torchrun rank without a report


@pytest.mark.slow
def test_a_diverged_run_exits_4_and_a_gated_verdict_exits_5_both_with_their_reports(tmp_path):
    diverged = run_dlrun(["optim=sgd", "optim.lr=1e9", "trainer.max_epochs=3", *QUICK,
                          f"hydra.run.dir={tmp_path / 'a'}"], tmp_path)
    assert diverged.returncode == EXIT_DIVERGED, diverged.stderr
    assert "the run diverged" in diverged.stderr and "Traceback" not in diverged.stderr
    assert json.loads((tmp_path / "a" / "report.json").read_text())["run"]["stop_reason"] == "diverged"
    page = (tmp_path / "a" / "report.md").read_text()  # NaN from the first epoch: not "the weights of epoch 0"
    assert "1 epoch, no finite epoch (judged on the weights it ended with)" in page and "epoch 0" not in page
    gated = run_dlrun(["optim.lr=1e-6", "trainer.max_epochs=3", "report.fail_on=[underfitting,overfitting]",
                       *QUICK, f"hydra.run.dir={tmp_path / 'b'}"], tmp_path)
    assert gated.returncode == EXIT_VERDICT, gated.stderr
    assert "report.fail_on: underfitting (severe) fired" in gated.stderr
    assert (tmp_path / "b" / "report.html").is_file()
    passed = run_dlrun(["optim.lr=1e-6", "trainer.max_epochs=3", "report.fail_on=[distribution_shift]", *QUICK,
                        f"hydra.run.dir={tmp_path / 'c'}"], tmp_path)
    assert passed.returncode == 0, passed.stderr

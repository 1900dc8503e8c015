"""A sweep survives its failing jobs: the others run, the summary lists the failure, the exit status says so."""

from __future__ import annotations

import json

import pytest

from tests.conftest import run_dlrun

pytestmark = pytest.mark.slow


def test_a_failing_job_does_not_end_the_sweep(tmp_path):
    sweep = tmp_path / "sweep"
    # job 0 fails at run time (nothing to resume), job 1 trains: the command line itself is valid
    done = run_dlrun(["-m", f"trainer.resume={tmp_path / 'nothing'},null", "trainer.max_epochs=1",
                      "trainer.progress=false", "report.plots=false", "model.hidden=[16]",
                      f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 3, done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("dlrun error")]
    assert errors[0].startswith("dlrun error in job 0: trainer.resume=") and "no checkpoint" in errors[0]
    assert errors[-1].startswith("dlrun error: 1 sweep job failed (0)")
    assert (sweep / "1" / "report.json").is_file()  # the other job ran
    assert "ranked by val_loss (min)" in done.stderr and "job 0 failed: trainer.resume=" in done.stderr
    assert all((sweep / f"summary.{ext}").is_file() for ext in ("json", "md", "csv", "html"))
    summary = json.loads((sweep / "summary.json").read_text())
    assert [r["job"] for r in summary["jobs"]] == ["1"]
    assert [(r["job"], r["exit_status"], r["kind"]) for r in summary["failed"]] == [("0", 2, "user error")]
    assert "no checkpoint" in summary["failed"][0]["error"]

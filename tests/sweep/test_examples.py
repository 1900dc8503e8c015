"""examples/slurm_run.sbatch without Slurm: the script runs under bash with a fake `scontrol`, gets Slurm's warning
signal (USR2 to the batch shell, as --signal=B:USR2@120 sends it), and must checkpoint, requeue, then resume."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, metrics_rows, signal_mid_epoch

pytestmark = pytest.mark.slow
ARGS = ["trainer.batch_size=4", "trainer.max_epochs=3", "early_stop.patience=50", "report.plots=false",
        "trainer.tensorboard=false", "model.hidden=[32]", "trainer.checkpoint_every=0"]


def test_the_sbatch_example_checkpoints_on_the_warning_requeues_and_resumes(tmp_path):
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {tmp_path / "scontrol.log"}\n')
    (fake / "scontrol").chmod(0o755)
    env = {**os.environ, "SLURM_JOB_ID": "4242", "OMP_NUM_THREADS": "1",
           "PATH": f"{fake}:{Path(sys.executable).parent}:{os.environ['PATH']}"}
    script = ROOT / "examples" / "slurm_run.sbatch"
    run_dir = tmp_path / "outputs" / "slurm-4242"
    job = subprocess.Popen(["bash", str(script), *ARGS], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    signal_mid_epoch(job, run_dir / "metrics.csv", after_epochs=1, sig=signal.SIGUSR2)  # Slurm's, to the shell
    out, _ = job.communicate(timeout=120)
    assert job.returncode == 128 + signal.SIGUSR2, out
    assert (tmp_path / "scontrol.log").read_text().split() == ["requeue", "4242"], out
    assert 1 <= len(metrics_rows(run_dir / "metrics.csv")) < 3
    # the requeued job: the same script, the same SLURM_JOB_ID; it continues and finishes
    again = subprocess.run(["bash", str(script), *ARGS], cwd=tmp_path, env=env, capture_output=True, text=True,
                           timeout=300)
    assert again.returncode == 0, again.stdout + again.stderr
    assert len(metrics_rows(run_dir / "metrics.csv")) == 3
    assert "continuing the run in" in (run_dir / "dlrun.log").read_text()

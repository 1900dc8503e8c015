"""Slurm without a cluster: submitit's AutoExecutor is replaced by a fake that records its parameters and runs
the jobs in the launching process, as Hydra's own submitit launcher tests do."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytest.importorskip("hydra_plugins.hydra_submitit_launcher")

FAKE = """
import json, sys
import submitit

calls = {"params": None, "init": None, "jobs": 0}


class FakeJob:
    def __init__(self, result):
        self.result = result

    def results(self):
        return [self.result]


class FakeEnvironment:
    job_id = "fake-slurm-job"


class FakeExecutor:
    def __init__(self, cluster, **kwargs):
        calls["init"] = {"cluster": cluster, **{k: str(v) for k, v in kwargs.items()}}

    def update_parameters(self, **kwargs):
        calls["params"] = kwargs

    def map_array(self, fn, *args):
        jobs = []
        for job_args in zip(*args):
            calls["jobs"] += 1
            jobs.append(FakeJob(fn(*job_args)))
        return jobs


submitit.AutoExecutor = FakeExecutor
submitit.JobEnvironment = FakeEnvironment
out, argv = sys.argv[1], sys.argv[2:]
sys.argv = ["dlrun", *argv]
try:
    from dlrun.cli import main
    main()
finally:
    with open(out, "w") as f:
        json.dump(calls, f, default=str)
"""


@pytest.mark.slow
def test_slurm_launcher_gets_the_resources_and_runs_every_job(tmp_path):
    sweep = tmp_path / "sweep"
    record = tmp_path / "calls.json"
    argv = ["-m", "hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.timeout_min=30",
            "hydra.launcher.account=proj42", "hydra.launcher.qos=high", "hydra.launcher.mem_gb=32",
            "hydra.launcher.gpus_per_node=2",
            "reg.dropout=0,0.5", "trainer.max_epochs=1", "model.hidden=[16]", "trainer.progress=false",
            f"hydra.sweep.dir={sweep}"]
    done = subprocess.run([sys.executable, "-c", FAKE, str(record), *argv], capture_output=True, text=True,
                          cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    calls = json.loads(record.read_text())
    assert calls["init"]["cluster"] == "slurm" and str(sweep) in calls["init"]["folder"]
    params = calls["params"]
    assert params["slurm_partition"] == "gpu" and params["timeout_min"] == 30
    assert params["gpus_per_node"] == 2 and params["tasks_per_node"] == 1 and params["cpus_per_task"] == 4
    assert params["slurm_account"] == "proj42" and params["slurm_qos"] == "high" and params["mem_gb"] == 32
    # the time-limit warning reaches the job 120 s ahead (dlrun checkpoints on it) and the job is requeued
    assert params["slurm_signal_delay_s"] == 120 and calls["init"]["slurm_max_num_timeout"] == "3"
    assert calls["jobs"] == 2
    reports = sorted(sweep.glob("*/report.json"))
    assert len(reports) == 2
    summary = json.loads((sweep / "summary.json").read_text())
    assert len(summary["jobs"]) == 2 and summary["missing"] == []

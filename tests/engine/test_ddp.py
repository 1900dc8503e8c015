"""DDP under torchrun on the CPU (gloo): two processes with batch 32 each train exactly like one with batch 64."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.slow

# 1280 digits split 60/20/20 leave 768 training samples: 12 batches of 64, or 2 x 12 batches of 32
COMMON = ["trainer.max_epochs=3", "trainer.progress=false", "report.plots=false", "trainer.threads=1",
          "dataset.max_samples=1280", "model.hidden=[64]", "trainer.tensorboard=false"]


def _rows(run_dir):
    with open(run_dir / "metrics.csv") as f:
        return [{k: float(v) for k, v in row.items() if k != "epoch_seconds"} for row in csv.DictReader(f)]


def test_two_processes_average_gradients_like_one_process_with_the_global_batch(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    ddp = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "-m", "dlrun",
                          *COMMON, "trainer.batch_size=32", f"hydra.run.dir={tmp_path / 'ddp'}"],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert ddp.returncode == 0, ddp.stderr[-3000:]
    single = subprocess.run([sys.executable, "-m", "dlrun", *COMMON, "trainer.batch_size=64",
                             f"hydra.run.dir={tmp_path / 'single'}"], capture_output=True, text=True, cwd=tmp_path,
                            env=env, timeout=300)
    assert single.returncode == 0, single.stderr
    a, b = _rows(tmp_path / "ddp"), _rows(tmp_path / "single")
    assert len(a) == len(b) == 3
    for ra, rb in zip(a, b):
        assert ra == pytest.approx(rb, rel=1e-5)
    report = json.loads((tmp_path / "ddp" / "report.json").read_text())
    assert report["run"]["world_size"] == 2
    # rank 0 alone drew the summary: one panel in the combined output
    assert ddp.stdout.count("diagnosis") == 1

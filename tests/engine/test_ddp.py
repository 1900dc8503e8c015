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


AGREE_SCRIPT = """
import os, sys
sys.path.insert(0, {root!r})
import torch
from tests.conftest import make_config
from dlrun import data, models
from dlrun.engine import devices, fit

torch.set_num_threads(1)
cfg = make_config(reg={{"batchnorm": True, "dropout": 0.2}}, early_stop={{"patience": 2}}, optim={{"lr": 0.01}},
                  sched={{"name": "plateau", "patience": 0}}, trainer={{"max_epochs": 40, "batch_size": 32}})
splits = data.load(cfg.dataset, cfg.split, cfg.shift)
torch.manual_seed(0)
model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer)
params = sum(float(p.detach().double().sum()) for p in model.parameters())
buffers = sum(float(b.double().sum()) for b in model.buffers())
lrs = [row["lr"] for row in history.rows]
with open(os.path.join({out!r}, "rank" + os.environ["RANK"] + ".txt"), "w") as f:
    f.write(repr((params, buffers, history.epochs_run, history.stop_reason, history.best_epoch, lrs)))
devices.teardown_distributed()
"""


def test_processes_agree_on_early_stopping_the_scheduler_and_batchnorm(tmp_path):
    """BatchNorm buffers differ per process and validation used to run per process: ranks could disagree on
    stopping (one leaves the loop, the other hangs in all_reduce) or on the plateau scheduler's learning rate."""
    from tests.conftest import ROOT

    script = tmp_path / "agree.py"
    script.write_text(AGREE_SCRIPT.format(root=str(ROOT), out=str(tmp_path)))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", str(script)],
                          capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    rank0 = eval((tmp_path / "rank0.txt").read_text())  # noqa: S307 (our own repr of floats and strings)
    rank1 = eval((tmp_path / "rank1.txt").read_text())  # noqa: S307
    assert rank0 == rank1
    params, buffers, epochs, stop_reason, best_epoch, lrs = rank0
    assert stop_reason == "patience" and epochs < 40  # early stopping decided, on both processes at once
    assert len(set(lrs)) > 1  # the plateau scheduler stepped the learning rate down, alike on both

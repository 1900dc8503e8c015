"""Shared test helpers: small thread counts (CI has 2 cores), a Config built without Hydra, a dlrun runner."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MPLBACKEND", "Agg")

import pytest  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
CONF_DIR = ROOT / "conf"


def make_config(**groups):
    """The default Config as plain dataclasses; `groups` replaces fields per group, e.g. trainer={"max_epochs": 2}."""
    from dlrun import config as c

    cfg = c.Config(model=c.MLPConfig(hidden=[64]), dataset=c.DigitsConfig(), split=c.SplitConfig(), reg=c.RegConfig(),
                   early_stop=c.EarlyStopConfig(), optim=c.OptimConfig(), sched=c.SchedConfig(),
                   trainer=c.TrainerConfig(max_epochs=3, progress="false", tensorboard=False, threads=1),
                   report=c.ReportConfig(), shift=c.ShiftConfig())
    for group, values in groups.items():
        current = getattr(cfg, group)
        setattr(cfg, group, values if not isinstance(values, dict) else replace(current, **values))
    return cfg


def run_dlrun(args: list[str], cwd: Path, timeout: float = 300, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `dlrun` (python -m dlrun) in a subprocess, capturing output."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    full_env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-m", "dlrun", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, env=full_env)


@pytest.fixture(scope="session", autouse=True)
def _torch_threads():
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:  # pragma: no cover
        pass


def metrics_rows(path: Path) -> list[dict]:
    """The rows of a run's metrics.csv so far ([] before the first epoch is written)."""
    import csv

    try:
        with open(path) as f:
            return list(csv.DictReader(f))
    except FileNotFoundError:
        return []


def signal_mid_epoch(proc: subprocess.Popen, metrics_csv: Path, after_epochs: int, sig: int,
                     timeout: float = 120, group: bool = False) -> None:
    """As a scheduler would: wait until `after_epochs` epochs are in metrics.csv, then half an epoch more (as this
    machine measured it), then send `sig` to proc, or with group=True to its whole process group (as `timeout`,
    a shell's job control and Slurm do: proc must have been started with start_new_session=True)."""
    import time

    deadline = time.monotonic() + timeout
    while len(rows := metrics_rows(metrics_csv)) < after_epochs:
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.01)
    time.sleep(float(rows[after_epochs - 1]["epoch_seconds"]) / 2)
    if group:
        os.killpg(proc.pid, sig)
    else:
        proc.send_signal(sig)

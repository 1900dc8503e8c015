"""Preemption and resume: a signal mid-epoch saves where the epoch stands, and the resumed run is the same run."""

from __future__ import annotations

import csv
import shlex
import signal

import pytest
import torch

from dlrun.engine import checkpoint
from dlrun.engine.loop import COLUMNS
from dlrun.errors import DlrunError
from dlrun.pipeline import run
from tests.conftest import make_config

# dropout makes the global RNG matter, augmentation noise the shuffle generator's: both must be restored exactly
GROUPS = {"reg": {"dropout": 0.2}, "early_stop": {"patience": 50}}


def _metrics(path):
    with open(path) as f:
        return [{k: r[k] for k in COLUMNS if k != "epoch_seconds"} for r in csv.DictReader(f)]


def _signal_at_batch(model, n: int, sig: int = signal.SIGTERM):
    """Send `sig` to this process during the n-th training forward pass (1-based), as a scheduler would."""
    calls = {"n": 0}

    def hook(module, args):  # noqa: ARG001
        if module.training:
            calls["n"] += 1
            if calls["n"] == n:
                signal.raise_signal(sig)

    return model.register_forward_pre_hook(hook)


def _run_with_signal(cfg, run_dir, batch: int, sig: int = signal.SIGTERM):
    """pipeline.run, with a signal raised in the `batch`-th training step overall."""
    from dlrun import models

    build = models.build

    def build_and_hook(*a, **k):
        model = build(*a, **k)
        _signal_at_batch(model, batch, sig)
        return model

    models.build = build_and_hook
    try:
        return run(cfg, run_dir, overrides=[])
    finally:
        models.build = build


def _batches_per_epoch(cfg) -> int:
    from dlrun import data

    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    return -(-len(splits.train) // cfg.trainer.batch_size)


def _noisy():
    from dlrun.config import AugmentConfig

    return {**GROUPS, "reg": {"dropout": 0.2, "augment": AugmentConfig(noise=0.1)},
            "sched": {"name": "plateau", "patience": 0}}


@pytest.mark.parametrize("groups", [GROUPS, _noisy()], ids=["dropout", "noise+plateau"])
def test_a_signal_mid_epoch_resumes_exactly(tmp_path, groups):
    whole = run(make_config(trainer={"max_epochs": 6}, **groups), tmp_path / "whole", overrides=[])
    per_epoch = _batches_per_epoch(make_config())
    k = 4  # the signal comes in the 4th batch of epoch 3; that batch finishes, the next one is saved as the resume point
    first = _run_with_signal(make_config(trainer={"max_epochs": 6}, **groups), tmp_path / "first",
                             batch=2 * per_epoch + k)
    assert first.exit_code == 128 + signal.SIGTERM
    assert first.report["run"]["stop_reason"] == "interrupted" and first.report["run"]["epochs_run"] == 2
    last = checkpoint.load(tmp_path / "first" / "checkpoints" / "last.pt")
    assert last["epoch"] == 2 and last["partial"]["next_batch"] == k

    resumed = run(make_config(trainer={"max_epochs": 6, "resume": str(tmp_path / "first")}, **groups),
                  tmp_path / "resumed", overrides=[])
    assert resumed.exit_code == 0
    assert _metrics(tmp_path / "whole" / "metrics.csv") == _metrics(tmp_path / "resumed" / "metrics.csv")
    a = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)
    assert whole.report["metrics"] == resumed.report["metrics"]
    # the header says the resume, and that its seconds count the epochs since (not "6 epochs in 0.4 s")
    assert whole.report["run"]["resumed_from"] == 0 and resumed.report["run"]["resumed_from"] == 2
    header = (tmp_path / "resumed" / "report.md").read_text()
    assert "6 epochs (resumed after epoch 2), judged" in header and " s (since resuming)" in header
    assert "resumed after" not in (tmp_path / "whole" / "report.md").read_text()


def test_a_signal_in_the_last_batch_of_the_last_epoch_leaves_the_run_finished(tmp_path):
    """Nothing was left to train: the whole report, no resume command, and the signal is not forgotten (128 + N,
    cli.py's line says the run had finished)."""
    cfg = make_config(trainer={"max_epochs": 2}, **GROUPS)
    result = _run_with_signal(cfg, tmp_path, batch=2 * _batches_per_epoch(cfg))
    assert result.report["run"]["stop_reason"] == "max_epochs" and not result.report["run"]["interrupted"]
    assert result.report["run"]["epochs_run"] == 2 and "resume_command" not in result.report["run"]
    assert result.signal == signal.SIGTERM and result.exit_code == 128 + signal.SIGTERM
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["partial"] is None


def test_a_signal_at_the_end_of_an_epoch_stops_before_the_next(tmp_path):
    cfg = make_config(trainer={"max_epochs": 5}, **GROUPS)
    result = _run_with_signal(cfg, tmp_path, batch=_batches_per_epoch(cfg))
    assert result.report["run"]["stop_reason"] == "interrupted" and result.report["run"]["epochs_run"] == 1
    assert checkpoint.load(tmp_path / "checkpoints" / "last.pt")["partial"] is None


# ----------------------------------------------------------------------------------------------------------------------
# what a resume refuses


def _first(tmp_path, **groups):
    run(make_config(trainer={"max_epochs": 2}, **groups), tmp_path / "a", overrides=[])
    return str(tmp_path / "a")


@pytest.mark.parametrize("change, key", [
    ({"trainer": {"batch_size": 32}}, "trainer.batch_size=64 (now 32)"),
    ({"trainer": {"seed": 1}}, "trainer.seed=0 (now 1)"),
    ({"trainer": {"deterministic": True}}, "trainer.deterministic=False (now True)"),
    ({"early_stop": {"monitor": "val_error"}}, "early_stop.monitor='val_loss' (now 'val_error')"),
    ({"early_stop": {"min_delta": 0.1}}, "early_stop.min_delta=0.0 (now 0.1)"),
])
def test_resume_refuses_a_change_that_alters_the_training(tmp_path, change, key):
    resume = _first(tmp_path)
    groups = {g: {**v} for g, v in change.items()}
    groups["trainer"] = {"max_epochs": 4, "resume": resume, **groups.get("trainer", {})}
    with pytest.raises(DlrunError, match=key.replace("(", r"\(").replace(")", r"\)").replace(".", r"\.")):
        run(make_config(**groups), tmp_path / "b", overrides=[])


def test_resume_accepts_more_epochs_and_more_patience(tmp_path):
    resume = _first(tmp_path)
    result = run(make_config(trainer={"max_epochs": 3, "resume": resume}, early_stop={"patience": 20}),
                 tmp_path / "b", overrides=[])
    assert result.report["run"]["epochs_run"] == 3


def test_resume_refuses_fewer_epochs_than_the_checkpoint_trained(tmp_path):
    resume = _first(tmp_path)  # 2 epochs trained
    with pytest.raises(DlrunError, match=r"trainer.max_epochs=1 is below the 2 epochs the checkpoint .* has trained "
                                         r"already: nothing would train; give at least 3 .*set to 2\)"):
        run(make_config(trainer={"max_epochs": 1, "resume": resume}), tmp_path / "b", overrides=[])


def test_resume_refuses_checkpoints_that_disagree_on_the_best_epoch(tmp_path):
    resume = _first(tmp_path)
    best_path = tmp_path / "a" / "checkpoints" / "best.pt"
    best = checkpoint.load(best_path)
    best["epoch"] = 7
    checkpoint.save(best_path, best)
    with pytest.raises(DlrunError, match=r"best\.pt.*epoch 7.*last\.pt.*epoch [12]"):
        run(make_config(trainer={"max_epochs": 3, "resume": resume}), tmp_path / "b", overrides=[])


def test_a_resumed_run_whose_patience_is_used_up_says_which_key_to_change(tmp_path, caplog):
    # patience 0 and a rising monitor: the first run stops on patience; resuming it with the same patience stops at once
    cfg = make_config(trainer={"max_epochs": 10}, early_stop={"patience": 0, "monitor": "train_loss",
                                                                "stopping_threshold": None},
                      optim={"lr": 10.0})
    first = run(cfg, tmp_path / "a", overrides=[])
    assert first.report["run"]["stop_reason"] in ("patience", "diverged")
    if first.report["run"]["stop_reason"] != "patience":
        pytest.skip("the run diverged instead of stopping on patience")
    again = make_config(trainer={"max_epochs": 10, "resume": str(tmp_path / "a")},
                        early_stop={"patience": 0, "monitor": "train_loss"}, optim={"lr": 10.0})
    with caplog.at_level("WARNING"):
        result = run(again, tmp_path / "b", overrides=[])
    assert result.report["run"]["epochs_run"] == first.report["run"]["epochs_run"]
    assert "early_stop.patience" in caplog.text


@pytest.mark.slow
def test_a_real_sigterm_mid_epoch_to_dlrun_resumes_exactly(tmp_path):
    """As Slurm preempts a job: SIGTERM to the dlrun process during epoch 3, then the printed resume command."""
    import json
    import os
    import subprocess
    import sys

    from tests.conftest import run_dlrun, signal_mid_epoch

    # small batches make an epoch long enough (hundreds of steps) that the signal lands inside one
    args = ["trainer.batch_size=4", "reg.dropout=0.2", "early_stop.patience=50", "trainer.max_epochs=6",
            "trainer.checkpoint_every=0", "trainer.tensorboard=false", "trainer.progress=false", "report.plots=false",
            "model.hidden=[32]"]
    whole = run_dlrun([*args, f"hydra.run.dir={tmp_path / 'whole'}"], tmp_path)
    assert whole.returncode == 0, whole.stderr
    run_dir = tmp_path / "first"
    proc = subprocess.Popen([sys.executable, "-m", "dlrun", *args, f"hydra.run.dir={run_dir}"], cwd=tmp_path,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    signal_mid_epoch(proc, run_dir / "metrics.csv", after_epochs=2, sig=signal.SIGTERM)  # during epoch 3
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    last = checkpoint.load(run_dir / "checkpoints" / "last.pt")
    assert last["partial"] is not None and 0 < last["partial"]["next_batch"], "the signal did not land mid-epoch"
    report = json.loads((run_dir / "report.json").read_text())
    command = report["run"]["resume_command"]
    assert command.startswith("dlrun ") and f"trainer.resume={run_dir}" in command and "hydra.run.dir" not in command
    resumed = run_dlrun([*shlex.split(command)[1:], f"hydra.run.dir={tmp_path / 'resumed'}"], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert _metrics(tmp_path / "whole" / "metrics.csv") == _metrics(tmp_path / "resumed" / "metrics.csv")
    a = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.pt")["model"]
    b = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["model"]
    assert all(torch.equal(a[key], b[key]) for key in a)


def test_an_atomic_write_syncs_the_file_then_the_folder_after_the_rename(tmp_path, monkeypatch):
    import os
    import stat

    events = []
    real_fsync, real_replace = os.fsync, os.replace
    monkeypatch.setattr(os, "fsync", lambda fd: (events.append(
        "fsync dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "fsync file"), real_fsync(fd)))
    monkeypatch.setattr(os, "replace", lambda a, b: (events.append("rename"), real_replace(a, b)))
    checkpoint.atomic_write_text(tmp_path / "x.txt", "hello")
    assert events == ["fsync file", "rename", "fsync dir"]
    assert (tmp_path / "x.txt").read_text() == "hello"


def test_a_signal_while_the_report_is_written_is_held_until_the_report_is_whole(tmp_path, monkeypatch):
    import json

    from dlrun.report import render as report_render

    render = report_render.render

    def render_with_a_signal(*a, **k):
        signal.raise_signal(signal.SIGTERM)  # the scheduler's SIGTERM arrives mid-report
        return render(*a, **k)

    monkeypatch.setattr(report_render, "render", render_with_a_signal)
    result = run(make_config(trainer={"max_epochs": 2}, **GROUPS), tmp_path, overrides=[])
    assert result.exit_code == 128 + signal.SIGTERM  # the scheduler learns the job was stopped ...
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["run"]["stop_reason"] == "max_epochs" and saved["run"]["epochs_run"] == 2  # ... the run finished
    assert (tmp_path / "report.md").is_file() and (tmp_path / "report.html").is_file()


def test_a_second_signal_stops_at_once_and_leaves_whole_files(tmp_path):
    from dlrun import models

    cfg = make_config(trainer={"max_epochs": 6, "checkpoint_every": 0.0}, **GROUPS)
    per_epoch = _batches_per_epoch(cfg)
    build = models.build

    def build_and_hook(*a, **k):
        model = build(*a, **k)
        _signal_at_batch(model, 2 * per_epoch + 3, signal.SIGINT)
        _signal_at_batch(model, 2 * per_epoch + 3, signal.SIGINT)  # the impatient user presses Ctrl-C twice
        return model

    models.build = build_and_hook
    try:
        with pytest.raises(KeyboardInterrupt):
            run(cfg, tmp_path, overrides=[])
    finally:
        models.build = build
    last = checkpoint.load(tmp_path / "checkpoints" / "last.pt")  # whole: the one written after epoch 2
    assert last["epoch"] == 2 and last["partial"] is None
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))

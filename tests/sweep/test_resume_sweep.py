"""trainer.resume=auto: rerun the same command and every run continues where it stopped. What a resumed sweep and a
requeued Slurm job (whose warning signal dlrun answers, then hands on to submitit) rely on."""

from __future__ import annotations

import csv
import json
import os
import shlex
import signal
import subprocess
import sys

import pytest

from dlrun.pipeline import run
from tests.conftest import make_config, run_dlrun, signal_mid_epoch


def test_auto_resume_skips_a_finished_run_and_starts_an_empty_folder(tmp_path):
    cfg = make_config(trainer={"max_epochs": 2, "resume": "auto"})
    first = run(cfg, tmp_path / "a", overrides=[])
    assert not first.skipped and first.report["run"]["epochs_run"] == 2  # nothing there: a fresh start
    stamp = (tmp_path / "a" / "metrics.csv").stat().st_mtime_ns
    again = run(cfg, tmp_path / "a", overrides=[])
    assert again.skipped and again.objective == first.objective == first.report["run"]["objective"]["value"]
    assert (tmp_path / "a" / "metrics.csv").stat().st_mtime_ns == stamp  # not trained again


def test_auto_resume_continues_an_interrupted_run(tmp_path):
    cfg = make_config(trainer={"max_epochs": 2, "resume": "auto"})
    run(cfg, tmp_path / "a", overrides=[])
    report = json.loads((tmp_path / "a" / "report.json").read_text())
    report["run"]["interrupted"] = True  # as a signal leaves it: a partial report beside the checkpoint
    (tmp_path / "a" / "report.json").write_text(json.dumps(report))
    longer = make_config(trainer={"max_epochs": 4, "resume": "auto"})
    result = run(longer, tmp_path / "a", overrides=[])
    assert not result.skipped and result.report["run"]["epochs_run"] == 4
    with open(tmp_path / "a" / "metrics.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == [1, 2, 3, 4]


# As submitit runs a job: its own USR2 handler (checkpoint the callable, requeue, exit), then the task.
SUBMITIT_LIKE = """
import signal, sys
marker = sys.argv[1]

def requeue(signum, frame):  # submitit's checkpoint_and_try_requeue, reduced to what the test can see
    open(marker, "w").write(signal.Signals(signum).name)
    sys.exit(-1)

signal.signal(signal.SIGUSR2, requeue)
sys.argv = ["dlrun", *sys.argv[2:]]
from dlrun.cli import main
main()
"""


@pytest.mark.slow
@pytest.mark.skipif(not hasattr(signal, "SIGUSR2"), reason="POSIX signals")
def test_slurm_warning_signal_checkpoints_then_requeues_and_the_requeued_job_resumes(tmp_path):
    from tests.engine.test_resume import _metrics

    args = ["trainer.batch_size=4", "early_stop.patience=50", "trainer.max_epochs=4", "trainer.checkpoint_every=0",
            "trainer.tensorboard=false", "trainer.progress=false", "report.plots=false", "model.hidden=[32]",
            "trainer.resume=auto"]
    whole = run_dlrun([*args, f"hydra.run.dir={tmp_path / 'whole'}"], tmp_path)
    assert whole.returncode == 0, whole.stderr
    run_dir, marker = tmp_path / "job", tmp_path / "requeued"
    command = [sys.executable, "-c", SUBMITIT_LIKE, str(marker), *args, f"hydra.run.dir={run_dir}"]
    proc = subprocess.Popen(command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"})
    signal_mid_epoch(proc, run_dir / "metrics.csv", after_epochs=1, sig=signal.SIGUSR2)
    _, err = proc.communicate(timeout=120)
    assert marker.read_text() == "SIGUSR2", err  # the launcher's handler got the signal after dlrun's checkpoint
    assert proc.returncode == 255, err  # submitit's sys.exit(-1), not dlrun's 128 + N
    from dlrun.engine import checkpoint

    assert checkpoint.load(run_dir / "checkpoints" / "last.pt")["partial"] is not None
    # the requeued job runs the same command: it continues from the checkpoint, exactly
    requeued = subprocess.run(command, cwd=tmp_path, capture_output=True, text=True, timeout=300,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert requeued.returncode == 0, requeued.stderr
    assert _metrics(tmp_path / "whole" / "metrics.csv") == _metrics(run_dir / "metrics.csv")


@pytest.mark.slow
def test_a_killed_sweep_resumes_without_retraining_its_finished_jobs(tmp_path):
    sweep = tmp_path / "sweep"
    # small batches: epochs long enough that the signal lands inside job 1, whatever this machine's speed; a
    # checkpoint (and metrics.csv) every epoch, so that the signal can be timed on job 1's first epoch
    args = ["-m", "trainer.seed=0,1,2", "trainer.max_epochs=3", "trainer.batch_size=4", "early_stop.patience=50",
            "trainer.progress=false", "trainer.checkpoint_every=0", "report.plots=false", "model.hidden=[16]",
            "trainer.tensorboard=false", f"hydra.sweep.dir={sweep}", "trainer.resume=auto"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    proc = subprocess.Popen([sys.executable, "-m", "dlrun", *args], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, start_new_session=True)
    # to the whole process group, the plot helper included, as `timeout` or Slurm would (in the second job)
    signal_mid_epoch(proc, sweep / "1" / "metrics.csv", after_epochs=1, sig=signal.SIGTERM, group=True)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert not (sweep / "2").exists() and not (sweep / "summary.json").exists()
    plan = json.loads((sweep / "sweep.json").read_text())["jobs"]  # so that a summary now lists job 2 as missing
    assert [[o for o in job if o.startswith("trainer.seed=")] for job in plan] == [[f"trainer.seed={i}"] for i in range(3)]
    assert (sweep / "1" / "report.html").is_file() and not (sweep / "1" / "failure.json").exists()  # partial report
    first_job = (sweep / "0" / "metrics.csv").stat().st_mtime_ns
    # the terminal says how to continue the sweep (not the job alone): its own command, resumed in its folder
    hint = next(line for line in err.splitlines() if line.startswith("the sweep stopped in job 1"))
    words = shlex.split(hint.split("checkpoint): ", 1)[1])
    assert words[:2] == ["dlrun", "-m"] and f"hydra.sweep.dir={sweep}" in words and "trainer.resume=auto" in words
    assert sorted(words[1:]) == sorted(args)
    resumed = run_dlrun(words[1:], tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert (sweep / "0" / "metrics.csv").stat().st_mtime_ns == first_job  # job 0 was not retrained
    assert "already holds a finished run" in resumed.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert sorted(r["job"] for r in summary["jobs"]) == ["0", "1", "2"] and summary["missing"] == []
    assert all(r["stop_reason"] == "max_epochs" for r in summary["jobs"])


def test_auto_resume_refuses_a_finished_run_with_other_settings_and_leaves_it_whole(tmp_path):
    """A folder holding a finished run stands for this run only if that run had these settings: a skipped job whose
    report shows other values would be a wrong line in the summary."""
    from dlrun.cli import check_run_dir
    from dlrun.errors import DlrunError
    from dlrun.preflight import check_command_line
    from tests.conftest import CONF_DIR

    run(make_config(trainer={"max_epochs": 2, "resume": "auto"}), tmp_path / "a", overrides=[])
    before = {p: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()}
    other = make_config(trainer={"max_epochs": 2, "resume": "auto"}, reg={"dropout": 0.5})
    with pytest.raises(DlrunError, match=r"holds a finished run trained with reg.dropout=0.0 \(now 0.5\)"):
        run(other, tmp_path / "a", overrides=[])
    # from the command line, before Hydra writes the new run's .hydra/ into the folder
    argv = [f"hydra.run.dir={tmp_path / 'a'}", "trainer.resume=auto", "reg.dropout=0.5", "model.hidden=[64]",
            "trainer.max_epochs=2", "trainer.threads=1"]
    with pytest.raises(DlrunError, match="another run, not this one"):
        check_run_dir(check_command_line(argv, str(CONF_DIR)), argv)
    assert {p: p.read_bytes() for p in (tmp_path / "a").rglob("*") if p.is_file()} == before
    # what a resume may change (more epochs, more patience) still finds the finished run
    more = make_config(trainer={"max_epochs": 5, "resume": "auto"}, early_stop={"patience": 30})
    assert run(more, tmp_path / "a", overrides=[]).skipped


def _fake_sweep(folder, jobs: list[list[str]]) -> None:
    import yaml

    for i, overrides in enumerate(jobs):
        (folder / str(i) / ".hydra").mkdir(parents=True)
        (folder / str(i) / ".hydra" / "overrides.yaml").write_text(yaml.safe_dump(overrides))
        (folder / str(i) / "report.json").write_text("{}")
    (folder / "summary.json").write_text("{}")


def test_a_sweep_folder_that_holds_a_sweep_is_refused_unless_resumed_with_the_same_command_or_replaced(tmp_path):
    from dlrun.cli import check_sweep_dir
    from dlrun.errors import DlrunError

    sweep = tmp_path / "sw"
    _fake_sweep(sweep, [["reg.dropout=0", "trainer.resume=auto"], ["reg.dropout=0.5", "trainer.resume=auto"]])
    argv = ["-m", f"hydra.sweep.dir={sweep}", "reg.dropout=0,0.5"]
    check_sweep_dir(["-m", f"hydra.sweep.dir={tmp_path / 'new'}", "reg.dropout=0,0.5"])  # a new folder: fine
    with pytest.raises(DlrunError, match=r"already holds a sweep \(jobs 0, 1\).*trainer.resume=auto.*overwrite=true"):
        check_sweep_dir(argv)
    check_sweep_dir([*argv, "trainer.resume=auto", "trainer.max_epochs=50"])  # the same sweep, longer: continues
    with pytest.raises(DlrunError, match="its job 1 ran reg.dropout=0.5, this command's job 1 is reg.dropout=0.7"):
        check_sweep_dir(["-m", f"hydra.sweep.dir={sweep}", "reg.dropout=0,0.7", "trainer.resume=auto"])
    with pytest.raises(DlrunError, match="its job 1 ran reg.dropout=0.5, this command's job 1 is no job"):
        check_sweep_dir(["-m", f"hydra.sweep.dir={sweep}", "reg.dropout=0", "trainer.resume=auto"])
    assert sorted(p.name for p in sweep.iterdir()) == ["0", "1", "summary.json"]  # nothing touched so far
    check_sweep_dir([*argv, "trainer.overwrite=true"])
    assert list(sweep.iterdir()) == []  # replaced: the summary will cover only the new jobs


def test_a_refused_resume_and_a_run_or_sweep_in_the_others_folder_are_stopped_before_hydra_writes(tmp_path):
    """The checks run before Hydra writes .hydra/ into the folder: a refused command leaves it as it was."""
    from dlrun.cli import check_run_dir, check_sweep_dir
    from dlrun.errors import DlrunError
    from dlrun.preflight import check_command_line
    from tests.conftest import CONF_DIR

    interrupted = tmp_path / "a"
    run(make_config(trainer={"max_epochs": 2}), interrupted, overrides=[])
    report = json.loads((interrupted / "report.json").read_text())
    report["run"]["interrupted"] = True  # a checkpoint to continue, not a finished run
    (interrupted / "report.json").write_text(json.dumps(report))
    for resume in ("auto", str(interrupted)):
        argv = [f"hydra.run.dir={interrupted}", f"trainer.resume={resume}", "model.hidden=[32]",
                "trainer.max_epochs=4", "trainer.threads=1"]
        with pytest.raises(DlrunError, match=r"the checkpoint was trained with model.hidden=\[64\] \(now \[32\]\)"):
            check_run_dir(check_command_line(argv, str(CONF_DIR)), argv)
    _fake_sweep(tmp_path / "sw", [["reg.dropout=0"]])
    argv = [f"hydra.run.dir={tmp_path / 'sw'}"]
    with pytest.raises(DlrunError, match=r"holds a sweep \(jobs 0\): a single run goes to another folder"):
        check_run_dir(check_command_line(argv, str(CONF_DIR)), argv)
    with pytest.raises(DlrunError, match=r"holds a single run \(checkpoints, report.json, metrics.csv\)"):
        check_sweep_dir(["-m", f"hydra.sweep.dir={interrupted}", "reg.dropout=0,0.5"])

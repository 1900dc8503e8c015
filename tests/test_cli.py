"""The `dlrun` command end to end, in a subprocess: run folder contents, Hydra flags, errors, signals."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import ROOT, make_config, run_dlrun

FAST = ["trainer.progress=false", "model.hidden=[64]"]


def test_importing_the_cli_does_not_import_torch():
    code = ("import sys, dlrun.cli, dlrun.config, dlrun.preflight; "
            "heavy = [m for m in ('torch', 'torchvision', 'matplotlib', 'scipy', 'sklearn') if m in sys.modules]; "
            "print(heavy)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_help_and_cfg_job(tmp_path):
    helped = run_dlrun(["--help"], tmp_path)
    assert helped.returncode == 0 and "model: " in helped.stdout and "mlp" in helped.stdout
    cfg = run_dlrun(["--cfg", "job", "model=mlp", "reg.dropout=0.5"], tmp_path)
    assert cfg.returncode == 0 and "dropout: 0.5" in cfg.stdout and "family: mlp" in cfg.stdout


@pytest.mark.slow
def test_two_epoch_run_writes_every_file(tmp_path):
    run_dir = tmp_path / "run"
    done = run_dlrun(["trainer.max_epochs=2", f"hydra.run.dir={run_dir}", *FAST], tmp_path)
    assert done.returncode == 0, done.stderr
    # the terminal summary: figures per split and the three verdicts
    for word in ("train", "val", "test", "underfitting", "overfitting", "distribution shift"):
        assert word in done.stdout
    # the run folder
    assert (run_dir / ".hydra" / "config.yaml").is_file() and (run_dir / ".hydra" / "overrides.yaml").is_file()
    assert (run_dir / "dlrun.log").is_file() and "data digits" in (run_dir / "dlrun.log").read_text()
    assert list(run_dir.glob("events.out.tfevents.*")), "TensorBoard event file missing"
    lines = (run_dir / "metrics.csv").read_text().splitlines()
    assert lines[0] == "epoch,train_loss,train_error,val_loss,val_error,lr,epoch_seconds" and len(lines) == 3
    for name in ("last.pt", "best.pt"):
        state = torch.load(run_dir / "checkpoints" / name, weights_only=True)
        assert "model" in state and "meta" in state
    assert "norm_mean" in state["meta"] and state["meta"]["overrides"][0] == "trainer.max_epochs=2"
    # report.json: the versioned contract
    report = json.loads((run_dir / "report.json").read_text())
    assert report["schema_version"] == 3
    run = report["run"]
    for key in ("overrides", "seed", "device", "torch_version", "epochs_run", "best_epoch", "stop_reason",
                "wall_seconds"):
        assert key in run
    assert run["epochs_run"] == 2 and run["stop_reason"] == "max_epochs" and run["device"] == "cpu"
    assert set(report["metrics"]) == {"train", "val", "test"}
    for m in report["metrics"].values():
        assert set(m) >= {"loss", "error", "n"} and 0 <= m["error"] <= 1
    assert set(report["decomposition"]) >= {"target_error", "avoidable_bias", "variance", "data_mismatch",
                                            "val_to_test"}
    assert set(report["diagnosis"]) == {"underfitting", "overfitting", "data_mismatch", "distribution_shift"}
    assert report["decomposition"]["focus"] in ("avoidable_bias", "variance")
    versus = report["evidence"]["versus_linear"]  # the network against a linear model, same validation samples
    assert versus["n"] == report["metrics"]["val"]["n"] and versus["linear_val_error"] == \
        report["baselines"]["simple_val_error"] and "simple_val_pred" not in report["baselines"]
    assert versus["difference"] == pytest.approx(report["metrics"]["val"]["error"] - versus["linear_val_error"])
    for finding in report["diagnosis"].values():
        assert set(finding) >= {"detected", "severity", "evidence", "actions"}
        assert finding["severity"] in ("none", "mild", "severe")
        for action in finding["actions"]:
            assert action["command"].startswith("dlrun ")
    md = (run_dir / "report.md").read_text()
    assert "## Verdicts" in md and "Error decomposition" in md and "dlrun trainer.max_epochs=2" in md


@pytest.mark.slow
def test_multirun_over_two_values(tmp_path):
    sweep = tmp_path / "sweep"
    done = run_dlrun(["-m", "reg.dropout=0,0.5", "trainer.max_epochs=1", f"hydra.sweep.dir={sweep}", *FAST],
                     tmp_path)
    assert done.returncode == 0, done.stderr
    reports = sorted(sweep.glob("*/report.json"))
    assert len(reports) == 2
    overrides = [json.loads(p.read_text())["run"]["overrides"] for p in reports]
    assert ["reg.dropout=0" in o for o in overrides] == [True, False]
    summary = json.loads((sweep / "summary.json").read_text())  # written by the sweep callback
    assert sorted(r["job"] for r in summary["jobs"]) == ["0", "1"] and (sweep / "summary.md").is_file()


@pytest.mark.parametrize("argv,message", [
    (["reg.droput=0.5"], "Did you mean reg.dropout?"),
    (["model=vgx"], "model='vgx' is not an option"),
    (["split.train=0.5"], "split ratios must sum to 1"),
    (["trainer.resume=/nonexistent/run"], "trainer.resume='/nonexistent/run': no checkpoint"),
    (["report.fail_on=[overfit]"], "e.g. report.fail_on=[overfitting,distribution_shift]"),  # not rich markup
])
def test_user_errors_exit_2_with_one_line_and_no_traceback(tmp_path, argv, message):
    done = run_dlrun([*argv, f"hydra.run.dir={tmp_path / 'run'}", *FAST], tmp_path)
    assert done.returncode == 2
    assert message in done.stderr and "Traceback" not in done.stderr + done.stdout


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_saves_a_checkpoint_and_a_partial_report(tmp_path, sig):
    run_dir = tmp_path / "run"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "dlrun", "trainer.max_epochs=100000", "early_stop.enabled=false",
                             "trainer.checkpoint_every=0", f"hydra.run.dir={run_dir}", *FAST],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 120
    while not (run_dir / "metrics.csv").exists():  # wait until training is under way
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + sig, err
    assert "Traceback" not in err
    last = torch.load(run_dir / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] >= 1
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["stop_reason"] == "interrupted" and report["run"]["interrupted"] is True
    assert report["run"]["epochs_run"] == last["epoch"]
    assert "interrupted" in (run_dir / "report.md").read_text()
    # the terminal says how to continue, with the run's own overrides and folder
    assert f"trainer.resume={run_dir}" in err and "trainer.max_epochs=100000" in err


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_before_training_says_nothing_was_saved(tmp_path, sig):
    """While the data loads (made slow here, as a big dataset is), a signal stops dlrun at once: one line that does
    not claim a checkpoint, no traceback, and 128 + the signal number."""
    run_dir, loading = tmp_path / "run", tmp_path / "loading"
    # Python's own SIGINT handler, as in a terminal: a shell that starts the tests in the background (`pytest &`)
    # has its children ignore SIGINT, and Python keeps ignoring it until dlrun installs its handlers for training
    code = ("import pathlib, signal, sys, time; import dlrun.data as d; "
            "signal.signal(signal.SIGINT, signal.default_int_handler); "
            f"d.load = lambda *a, **k: (pathlib.Path({str(loading)!r}).touch(), time.sleep(120)); "
            f"sys.argv = ['dlrun', 'hydra.run.dir={run_dir}', *{FAST!r}]; from dlrun.cli import main; main()")
    proc = subprocess.Popen([sys.executable, "-c", code], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={**os.environ, "OMP_NUM_THREADS": "1"})
    deadline = time.monotonic() + 120
    while not loading.exists():  # the data is loading: the run has started, and nothing has trained
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 128 + sig, err
    assert "before any checkpoint was written: nothing to resume" in err and "Traceback" not in err, err
    assert "intact" not in err and not (run_dir / "checkpoints").exists()


def test_a_user_error_found_while_the_run_starts_leaves_no_folder_behind(tmp_path):
    """The data file is looked for when the run loads its data, after Hydra made the run folder: that folder, which
    would hold only .hydra/ and the log, goes; a folder that holds anything else stays."""
    args = ["dataset=tabular", f"dataset.path={tmp_path / 'missing.csv'}", "dataset.target=y", *FAST]
    done = run_dlrun([*args, f"hydra.run.dir={tmp_path / 'run'}"], tmp_path)
    assert done.returncode == 2 and "does not exist" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "run").exists()
    (tmp_path / "kept").mkdir()
    (tmp_path / "kept" / "notes.txt").write_text("mine")
    assert run_dlrun([*args, f"hydra.run.dir={tmp_path / 'kept'}"], tmp_path).returncode == 2
    assert (tmp_path / "kept" / "notes.txt").read_text() == "mine"


def test_a_second_signal_names_the_checkpoint_only_when_there_is_one(tmp_path, capsys):
    from dlrun.cli import _stop_at_once

    for run_dir, expected in ((tmp_path, "before any checkpoint was written"), (None, "nothing to resume")):
        with pytest.raises(SystemExit) as done:
            _stop_at_once(KeyboardInterrupt(), run_dir)
        assert done.value.code == 130 and expected in capsys.readouterr().err
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.pt").write_bytes(b"x")
    with pytest.raises(SystemExit) as done:
        _stop_at_once(KeyboardInterrupt(signal.SIGTERM), tmp_path)
    err = capsys.readouterr().err
    assert done.value.code == 143 and "by SIGTERM" in err and f"trainer.resume={tmp_path}" in err


def test_a_signal_dlrun_did_not_answer_in_a_sweep_says_how_to_continue_the_sweep(tmp_path, capsys, monkeypatch):
    """A second Ctrl-C in a sweep job, or Ctrl-C while a joblib launcher waits: the sweep's own command resumes it."""
    from dlrun.cli import _stop_at_once

    monkeypatch.setattr(sys, "argv", ["dlrun", "-m", "reg.dropout=0,0.5", f"hydra.sweep.dir={tmp_path}"])
    with pytest.raises(SystemExit) as done:
        _stop_at_once(KeyboardInterrupt(), tmp_path / "0", tmp_path)
    err = capsys.readouterr().err
    assert done.value.code == 130 and "each job keeps its last checkpoint; to continue the sweep" in err
    assert f"dlrun -m reg.dropout=0,0.5 hydra.sweep.dir={tmp_path} trainer.resume=auto" in err


# dlrun in a subprocess that raises signals in itself when it first reaches `where`: a function (module:attribute,
# wrapped to raise them before it runs), "atexit" (an exit callback) or "teardown" (Python's clearing of modules, the
# last second of a run that has imported torch). signal.raise_signal runs the handler at once, as a signal from
# outside would at that instant: the point is deterministic, not a race with the machine's speed.
SIGNALS_AT = """
import functools, importlib, signal, sys
where, names, sys.argv = sys.argv[1], sys.argv[2].split(","), ["dlrun", *sys.argv[3:]]
fired = []

def fire(raise_signal=signal.raise_signal, signals=[getattr(signal, n) for n in names]):
    if not fired:
        fired.append(True)
        for s in signals:
            raise_signal(s)

if where == "atexit":
    import atexit
    atexit.register(fire)
elif where == "teardown":
    class Fire:
        def __del__(self):
            fire()
    at_teardown = Fire()
else:
    module, _, path = where.partition(":")
    owner = importlib.import_module(module)
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    original = getattr(owner, name)

    @functools.wraps(original)
    def hooked(*args, **kwargs):
        fire()
        return original(*args, **kwargs)

    setattr(owner, name, hooked)
from dlrun.cli import main
main()
"""
QUICK_RUN = ["trainer.max_epochs=1", "report.plots=false", "trainer.tensorboard=false", *FAST]


def _dlrun_signalled_at(where: str, signals: str, args: list[str], cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    env.pop("HYDRA_FULL_ERROR", None)
    return subprocess.run([sys.executable, "-c", SIGNALS_AT, where, signals, *args], cwd=cwd, capture_output=True,
                          text=True, timeout=300, env=env)


@pytest.mark.parametrize("where,signals", [
    ("dlrun.engine.loop:_RunWriter.close", "SIGINT"),  # after the last batch, held by training: nothing left to train
    ("dlrun.console:TerminalUI.summary", "SIGINT"),  # held by the report: before its last line is printed
    ("dlrun.loggers:Loggers.finish", "SIGTERM"),  # after the report's own hold
    ("dlrun.loggers:Loggers.finish", "SIGINT,SIGINT"),  # a second one ends dlrun at once
])
def test_a_signal_after_the_report_is_complete_says_the_run_finished(tmp_path, where, signals):
    """The run's files are complete: one line that says so, 128 + N, and nothing about an interruption."""
    run_dir = tmp_path / "run"
    done = _dlrun_signalled_at(where, signals, [*QUICK_RUN, f"hydra.run.dir={run_dir}"], tmp_path)
    sig = getattr(signal, signals.split(",")[0])
    name = "Ctrl-C" if sig == signal.SIGINT else "SIGTERM"
    assert done.returncode == 128 + sig, done.stderr
    assert f"dlrun: exit {128 + sig}: {name} came after the run had finished; its report is complete: " \
           f"{run_dir / 'report.md'}" in done.stderr
    assert "Traceback" not in done.stderr and "resume" not in done.stderr and "interrupted" not in done.stderr
    report = json.loads((run_dir / "report.json").read_text())
    assert report["run"]["stop_reason"] == "max_epochs" and report["run"]["interrupted"] is False


@pytest.mark.parametrize("where", ["atexit", "teardown"])
def test_a_signal_while_dlrun_exits_is_ignored(tmp_path, where):
    """After dlrun's last line: no traceback from an exit callback, no silent death by the signal."""
    run_dir = tmp_path / "run"
    done = _dlrun_signalled_at(where, "SIGINT", [*QUICK_RUN, f"hydra.run.dir={run_dir}"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception ignored" not in done.stderr, done.stderr
    assert f"report: {run_dir / 'report.md'}" in done.stdout and "dlrun: exit" not in done.stderr


SWEEP = ["-m", "trainer.seed=0,1", *QUICK_RUN]


@pytest.mark.slow
def test_a_signal_after_a_sweeps_last_job_still_writes_its_summary(tmp_path):
    """Ctrl-C as the sweep's summary starts (the sweep callback waits for the plot helper first): held until the
    summary is written and printed, then one line and 130."""
    sweep = tmp_path / "sweep"
    done = _dlrun_signalled_at("dlrun.report.background:shutdown", "SIGINT", [*SWEEP, f"hydra.sweep.dir={sweep}"],
                               tmp_path)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "resume" not in done.stderr
    assert f"dlrun: exit 130: Ctrl-C came after the sweep's last job had ended; its summary is complete: " \
           f"{sweep}/summary.html" in done.stderr
    summary = json.loads((sweep / "summary.json").read_text())
    assert [r["stop_reason"] for r in summary["jobs"]] == ["max_epochs"] * 2


@pytest.mark.slow
def test_a_second_signal_while_a_sweeps_summary_is_written_says_how_to_write_it(tmp_path):
    sweep = tmp_path / "sweep"
    done = _dlrun_signalled_at("dlrun.report.background:shutdown", "SIGINT,SIGINT",
                               [*SWEEP, f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and not (sweep / "summary.json").exists()
    said = "dlrun: exit 130: Ctrl-C came after job 1 had ended, before the sweep's summary was written"
    line = next((line for line in done.stderr.splitlines() if line.startswith(said)), "")
    assert f"dlrun-summary {sweep} writes it" in line and f"hydra.sweep.dir={sweep} trainer.resume=auto" in line, \
        done.stderr
    rebuilt = subprocess.run([sys.executable, "-c", "from dlrun.cli import summary_main; summary_main()", str(sweep)],
                             capture_output=True, text=True, timeout=300)
    assert rebuilt.returncode == 0, rebuilt.stderr  # every job finished
    assert sorted(r["job"] for r in json.loads((sweep / "summary.json").read_text())["jobs"]) == ["0", "1"]


@pytest.mark.slow
@pytest.mark.parametrize("signals,said", [
    ("SIGINT", "came after the sweep's last job had ended; its summary is complete: {sweep}/summary.html"),
    ("SIGINT,SIGINT", "came after the sweep's last job had ended, before the sweep's summary was written: "
                      "dlrun-summary {sweep} writes it"),
])
def test_a_signal_while_a_joblib_sweep_writes_its_summary_says_the_jobs_had_ended(tmp_path, signals, said):
    """The jobs ran in joblib's processes: the summary holds a signal in the sweep's own process too (it used to say
    "stopped at once ... each job keeps its last checkpoint", of jobs that had all finished)."""
    pytest.importorskip("hydra_plugins.hydra_joblib_launcher")
    sweep = tmp_path / "sweep"
    done = _dlrun_signalled_at("dlrun.sweep.callback:write_summary", signals,
                               [*SWEEP, "hydra/launcher=joblib", "hydra.launcher.n_jobs=2", f"hydra.sweep.dir={sweep}"],
                               tmp_path)
    assert done.returncode == 130, done.stderr
    assert f"dlrun: exit 130: Ctrl-C {said.format(sweep=sweep)}" in done.stderr, done.stderr
    assert "Traceback" not in done.stderr and "stopped at once" not in done.stderr
    assert (sweep / "summary.json").exists() == (signals == "SIGINT")


@pytest.mark.slow
def test_a_signal_between_two_jobs_stops_the_sweep_before_the_next(tmp_path):
    """SIGTERM just after job 0's report: job 0 stays finished, job 1 does not start, and the line says how to
    continue the sweep or summarize it."""
    sweep = tmp_path / "sweep"
    done = _dlrun_signalled_at("dlrun.loggers:Loggers.finish", "SIGTERM", [*SWEEP, f"hydra.sweep.dir={sweep}"],
                               tmp_path)
    assert done.returncode == 143, done.stderr
    assert "Traceback" not in done.stderr and not (sweep / "1").exists()
    said = "dlrun: exit 143: SIGTERM came after job 0 had ended, before the sweep's summary was written"
    line = next((line for line in done.stderr.splitlines() if line.startswith(said)), "")
    assert f"dlrun-summary {sweep}" in line and f"hydra.sweep.dir={sweep} trainer.resume=auto" in line, done.stderr
    assert json.loads((sweep / "0" / "report.json").read_text())["run"]["stop_reason"] == "max_epochs"


def test_python_dash_m_and_the_console_script_are_the_same_entry_point():
    text = (ROOT / "pyproject.toml").read_text()
    assert 'dlrun = "dlrun.cli:main"' in text
    assert "from dlrun.cli import main" in (ROOT / "dlrun" / "__main__.py").read_text()


def test_info_and_a_users_config_dir(tmp_path):
    assert "Hydra" in run_dlrun(["--info"], tmp_path).stdout
    (tmp_path / "my_conf" / "model").mkdir(parents=True)
    (tmp_path / "my_conf" / "model" / "tiny.yaml").write_text("defaults: [mlp_schema]\nhidden: [16]\n")
    done = run_dlrun(["--config-dir", str(tmp_path / "my_conf"), "model=tiny", "--cfg", "job"], tmp_path)
    assert done.returncode == 0, done.stderr
    assert "- 16" in done.stdout and "family: mlp" in done.stdout


def test_printed_commands_start_the_way_the_run_was_started(tmp_path):
    from dlrun.cli import launch_prefix

    assert launch_prefix(["reg.dropout=0.5"], environ={}) == "dlrun"
    assert launch_prefix(["--config-dir", "my conf", "experiment=x"], environ={}) == \
        f"dlrun --config-dir '{Path('my conf').resolve()}'"
    assert launch_prefix(["-cd=x"], environ={}) == "dlrun" and launch_prefix(["--config-dir=/c"], environ={}) == \
        "dlrun --config-dir /c"
    torchrun = {"TORCHELASTIC_RUN_ID": "1", "LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8"}
    assert launch_prefix([], environ=torchrun) == "torchrun --nnodes=2 --nproc-per-node=4 -m dlrun"
    assert launch_prefix([], environ={**torchrun, "WORLD_SIZE": "4"}) == "torchrun --nproc-per-node=4 -m dlrun"


def test_next_run_and_resume_commands_carry_the_launch_prefix(tmp_path):
    from dlrun.pipeline import run

    cfg = make_config(optim={"lr": 1e-6}, report={"plots": False})
    prefix = "dlrun --config-dir /my/conf"
    result = run(cfg, tmp_path, overrides=["experiment=mine", "optim.lr=1e-06"], launch=prefix)
    commands = [a["command"] for f in result.report["diagnosis"].values() for a in f["actions"] if a["command"]]
    assert commands and all(c.startswith(prefix + " experiment=mine") for c in commands)
    from dlrun.pipeline import resume_command

    assert resume_command(["experiment=mine"], tmp_path, prefix) == f"{prefix} experiment=mine trainer.resume={tmp_path}"

"""The `dlrun` command: a Hydra app that validates the config, runs it, and prints user errors in one line.

Nothing heavy is imported here: `dlrun --help` and composing a config never import torch (tests/test_cli.py).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig, OmegaConf

from dlrun.config import register_configs, validate
from dlrun.errors import DlrunError
from dlrun.folders import check_run_dir, check_sweep_dir, chosen_values, drop_stub
from dlrun.preflight import CommandLine, check_command_line, compose_checked


def _conf_dir() -> str:
    """The packaged dlrun/conf in an installed wheel, else the repository's conf/ next to the package."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else packaged.parent.parent / "conf")


CONF_DIR = _conf_dir()
register_configs()


def _fail(message: str, code: int = 2) -> None:
    _print_error(message)
    sys.exit(code)


def _print_error(message: str) -> None:
    from rich.console import Console
    from rich.markup import escape

    # escaped: a message quotes the user's text, and logger=[tensorboard,mlflow] is not markup
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]dlrun error:[/] {escape(message)}")


def _say(line: str) -> None:
    from rich.console import Console

    Console(stderr=True, highlight=False, soft_wrap=True).print(line, markup=False)


def _sweep_dir(argv: list[str]) -> Path | None:
    """The running sweep's folder (a joblib or submitit launcher was waiting for its jobs): hydra.sweep.dir, or the
    one Hydra set up; None before it exists."""
    from hydra.core.hydra_config import HydraConfig

    chosen = chosen_values(argv, "hydra.sweep.dir")
    folder = Path(chosen[-1]) if chosen else Path(HydraConfig.get().sweep.dir) if HydraConfig.initialized() else None
    return folder if folder is not None and folder.is_dir() else None


class _AfterTheRun:
    """SIGINT and SIGTERM in the dlrun process (main installs `handler`; training and the report install their own,
    engine/loop.py catch_signals, and put this one back). Until a run has finished, a signal raises KeyboardInterrupt
    (as Python's SIGINT handler does) and dlrun stops at once (_stop_at_once). Once its report is complete (in a
    sweep, once a job has ended) nothing can interrupt the run any more: the first signal is held until dlrun is
    done (main) or the sweep's next job would start (app), a second one ends dlrun at once, and either way `say`
    tells that the run had finished, never that it was interrupted (README "The run folder")."""

    def __init__(self) -> None:
        self.run_dir: Path | None = None  # the finished run's folder, while its signals are held
        self.sweep_dir: Path | None = None  # in a sweep: its folder, and the last job that ended
        self.job: str | None = None
        self.signal: int | None = None  # the signal held since the run finished
        self.exit_code = 0  # a finished single run's own status (4 diverged, 5 report.fail_on), for main to exit with

    def listen(self) -> None:
        import signal

        signal.signal(signal.SIGTERM, self.handler)
        if signal.getsignal(signal.SIGINT) is signal.default_int_handler:  # not a wrapper's handler, nor ignored
            signal.signal(signal.SIGINT, self.handler)

    def handler(self, signum: int, frame) -> None:  # noqa: ARG002
        if self.run_dir is None or self.signal is not None:
            raise KeyboardInterrupt(signum)
        self.signal = signum

    def finished(self, run_dir: Path, sweep_dir: Path | None, job: str | None, held: int | None) -> None:
        """The run's report is complete, with the signal the report held if one came: pipeline.run's on_finished
        calls this while the report still holds signals, so that none falls between the two holds."""
        self.sweep_dir, self.job, self.signal = sweep_dir, job, held
        self.run_dir = run_dir

    def jobs_ended(self, sweep_dir: Path) -> None:
        """A sweep's jobs have all ended and its summary is next (the sweep callback). With a basic launcher the last
        job's hold is on already; with joblib or Slurm the jobs ran in other processes, and the hold starts here."""
        if self.run_dir is None:
            self.run_dir, self.sweep_dir, self.job = sweep_dir, sweep_dir, None

    def next_job(self) -> int | None:
        """A sweep's next job starts: the signal held since the last one ended, and no hold from now on."""
        self.run_dir = None  # first: from here a signal stops this job at once
        held, self.signal = self.signal, None
        return held

    def close(self) -> int | None:
        """dlrun is done: SIGINT and SIGTERM are ignored from now on; the signal held, if one came. A signal during
        the interpreter's exit (a second or more with torch loaded) could only cut it short: Python's handler raises
        in an atexit callback (a traceback), and once Python has put the default action back the process dies
        without a word (exit status 130)."""
        import signal

        for s in (signal.SIGINT, signal.SIGTERM):
            signal.signal(s, signal.SIG_IGN)
        return self.signal

    def say(self, signum: int) -> None:
        """One line for a signal that came after the run had finished, then exit 128 + N. Its files are complete:
        nothing to resume; a sweep says whether its summary is written, else how to write it."""
        import shlex

        from dlrun.sweep.callback import LAST_SUMMARY

        code = 128 + signum
        name = _signal_name(signum)
        if self.sweep_dir is None:
            _say(f"dlrun: exit {code}: {name} came after the run had finished; its report is complete: "
                 f"{self.run_dir / 'report.md'}")
        elif LAST_SUMMARY:
            _say(f"dlrun: exit {code}: {name} came after the sweep's last job had ended; its summary is complete: "
                 f"{LAST_SUMMARY['sweep_dir']}/summary.html")
        else:
            resume = sweep_resume_command(sys.argv[1:], self.sweep_dir)
            ended = f"job {self.job}" if self.job is not None else "the sweep's last job"
            _say(f"dlrun: exit {code}: {name} came after {ended} had ended, before the sweep's summary was "
                 f"written: dlrun-summary {shlex.quote(str(self.sweep_dir))} writes it from the jobs so far; to "
                 f"continue the sweep (finished jobs are skipped): {resume}")
        sys.exit(code)


_finished = _AfterTheRun()


def hold_signals_after_jobs(sweep_dir: Path) -> None:
    """The sweep callback's: its jobs have ended, a signal is held while their summary is written."""
    _finished.jobs_ended(sweep_dir)


def _signal_name(signum: int) -> str:
    """Ctrl-C for SIGINT, else the signal's name (SIGTERM)."""
    import signal

    return "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name


def _stop_at_once(err: KeyboardInterrupt, run_dir: Path | None, sweep_dir: Path | None = None) -> None:
    """A signal dlrun did not get to answer (before training, or a second one): say what it leaves on disk, and exit
    with 128 + its number. In a sweep, how to continue the sweep (its jobs keep their last checkpoints)."""
    import signal

    signum = err.args[0] if err.args and isinstance(err.args[0], int) else signal.SIGINT
    if _finished.run_dir is not None:  # a second signal after the run (a sweep's job) had finished
        _finished.say(signum)
    name = _signal_name(signum)
    if sweep_dir is not None:
        _fail(f"stopped at once by {name}: each job keeps its last checkpoint; to continue the sweep (finished jobs "
              f"are skipped): {sweep_resume_command(sys.argv[1:], sweep_dir)}", code=128 + signum)
    last = run_dir / "checkpoints" / "last.pt" if run_dir is not None else None
    if last is not None and last.is_file():
        _fail(f"stopped at once by {name}: the last checkpoint written ({last}) is intact; resume from it with "
              f"trainer.resume={run_dir}", code=128 + signum)
    _fail(f"stopped at once by {name} before any checkpoint was written: nothing to resume; run the command again",
          code=128 + signum)


@hydra.main(config_path=CONF_DIR, config_name="config", version_base="1.3")
def app(cfg: DictConfig) -> float | None:
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hc = HydraConfig.get()
    in_sweep = hc.mode == RunMode.MULTIRUN
    in_process = in_sweep and hc.launcher.get("_target_", "").endswith("BasicLauncher")  # jobs one after another here
    run_dir, sweep_dir = Path(hc.runtime.output_dir), Path(hc.sweep.dir) if in_sweep else None
    held = _finished.next_job()
    if held:  # came after the previous job had ended: the sweep stops before this one
        drop_stub(run_dir)
        _finished.say(held)
    if in_sweep:  # a new attempt at this job (a resumed sweep): an earlier failure no longer stands
        (run_dir / "failure.json").unlink(missing_ok=True)
        if in_process:  # draw each report's plots while the next job trains
            from dlrun.report import background

            background.enable()
    try:
        validate(cfg)
        from dlrun import console
        from dlrun.pipeline import run

        plain = OmegaConf.to_object(cfg)
        job = str(hc.job.num) if in_sweep else None
        result = run(plain, run_dir, overrides=list(hc.overrides.task), launch=launch_prefix(),
                     ui=console.TerminalUI(plain.trainer.progress), sweep_dir=sweep_dir,
                     on_finished=lambda held: _finished.finished(run_dir, sweep_dir, job, held))
    except DlrunError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if in_sweep:  # one failing combination does not end the sweep: record it, score it as the worst
            return _job_failed(hc, str(err), 2, "user error")
        drop_stub(run_dir)
        _fail(str(err))
        return None
    except Exception as err:  # noqa: BLE001 - a bug: its traceback goes to the job's log, the sweep goes on
        if not in_sweep or os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        import logging
        import traceback

        logging.getLogger(__name__).error("job failed:\n%s", traceback.format_exc())
        return _job_failed(hc, f"{type(err).__name__}: {err}", 1, "exception")
    except KeyboardInterrupt as err:  # before training, or a second Ctrl-C: stop now; every file on disk is whole
        _stop_at_once(err, run_dir, sweep_dir)
        return None
    if result.skipped:
        _say(f"dlrun: {result.run_dir} already holds a finished run (trainer.resume=auto): not trained again")
    if result.signal and _finished.run_dir is None:  # not finished (no on_finished): interrupted, checkpoint written
        if in_process:  # this process runs the sweep
            _say(f"the sweep stopped in job {hc.job.num}; to continue it (finished jobs are skipped, this one resumes "
                 f"from its checkpoint): {sweep_resume_command(sys.argv[1:], sweep_dir)}")
        _hand_on(result.signal)
        sys.exit(result.exit_code)
    if result.signal:  # came while the report was written: the run finished, and the signal is held (_AfterTheRun)
        _finished.signal = _finished.signal or result.signal  # also one that came after on_finished
        _hand_on(result.signal)
        if in_sweep and not in_process:  # a job in a process of its own (joblib, Slurm) ends here
            sys.exit(result.exit_code)
    elif result.exit_code and not in_sweep:  # in a sweep a diverged or gated run is a finished job: the sweep goes on
        _explain_exit(result.report, result.exit_code, plain.report.fail_on)
    _finished.exit_code = 0 if in_sweep else result.exit_code
    return result.objective


def _explain_exit(report: dict, code: int, fail_on: list[str]) -> None:
    from rich.console import Console

    from dlrun.errors import EXIT_DIVERGED

    if code == EXIT_DIVERGED and report["run"]["stop_reason"] == "divergence_threshold":
        why = "the monitored metric rose above early_stop.divergence_threshold; the report's notes say where"
    elif code == EXIT_DIVERGED:
        why = "the run diverged (non-finite loss); its report says which learning rate to try next"
    else:
        fired = [f"{name} ({report['diagnosis'][name]['severity']})" for name in fail_on
                 if report["diagnosis"].get(name, {}).get("detected")]
        why = f"report.fail_on: {', '.join(fired)} fired"
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"dlrun: exit {code}: {why}", markup=False)


def _hand_on(signum: int) -> None:
    """Give a signal dlrun has answered (checkpoint, partial report) to the handler it replaced, when that is a
    Python function: under submitit, Slurm's warning signal (USR2) then requeues the job, which continues with
    trainer.resume=auto. Without one (a plain dlrun), the run exits with 128 + the signal number."""
    import signal

    handler = signal.getsignal(signum)
    if callable(handler) and handler not in (signal.default_int_handler, _finished.handler):
        handler(signum, None)


def sweep_resume_command(argv: list[str], sweep_dir: Path) -> str:
    """The sweep's own command line, pointed at its folder with trainer.resume=auto (README "Resuming a sweep")."""
    import shlex

    keep = [a for a in argv if a.split("=", 1)[0].lstrip("+~") not in ("hydra.sweep.dir", "trainer.resume")]
    return " ".join([launch_prefix(argv).split(" --config-dir")[0], *(shlex.quote(a) for a in keep),
                     shlex.quote(f"hydra.sweep.dir={sweep_dir}"), "trainer.resume=auto"])


def launch_prefix(argv: list[str] | None = None, environ: dict | None = None) -> str:
    """How this process was started, for the commands dlrun prints: `dlrun`, plus `--config-dir DIR` (absolute),
    under torchrun `torchrun --nnodes=N --nproc-per-node=M -m dlrun`. Overrides (experiment=, ...) come after it."""
    import shlex

    argv = sys.argv[1:] if argv is None else argv
    environ = os.environ if environ is None else environ
    words = ["dlrun"]
    local = environ.get("LOCAL_WORLD_SIZE")
    if environ.get("TORCHELASTIC_RUN_ID") is not None and local:
        nodes = max(1, int(environ.get("WORLD_SIZE", local)) // int(local))
        words = ["torchrun", *([f"--nnodes={nodes}"] if nodes > 1 else []), f"--nproc-per-node={local}", "-m", "dlrun"]
    words += [word for folder in CommandLine(argv).config_dirs for word in ("--config-dir", shlex.quote(folder))]
    return " ".join(words)


def _job_failed(hc, error: str, exit_status: int, kind: str) -> float:
    from dlrun.sweep.callback import record_failure

    record_failure(Path(hc.runtime.output_dir), list(hc.overrides.task), error, exit_status, kind)
    _finished.finished(Path(hc.runtime.output_dir), Path(hc.sweep.dir), str(hc.job.num), None)  # it has ended
    from rich.console import Console
    from rich.markup import escape

    Console(stderr=True, highlight=False, soft_wrap=True).print(
        f"[bold red]dlrun error in job {hc.job.num}:[/] {escape(error)}")
    return float("inf")  # the worst value for a sweeper that minimises the objective


REPORT_USAGE = """usage: dlrun-report RUN_DIR [report.KEY=VALUE ...]

Rebuild the report of an existing run (report.json, report.md, report.html, plots/) from its checkpoints,
config and data, without training; e.g. after changing thresholds: dlrun-report outputs/2026-11-23/10-00-00
report.tolerance=0.02 report.target_error=0.01"""


def report_main(argv: list[str] | None = None) -> None:
    """`dlrun-report RUN_DIR [report.key=value ...]`: re-diagnose a finished run without retraining."""
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] in ("-h", "--help"):
        print(REPORT_USAGE)
        return
    run_dir, extra = Path(argv[0]), argv[1:]
    try:
        import yaml
        bad = [o for o in extra if not o.startswith("report.")]
        if bad:
            raise DlrunError(f"dlrun-report changes only report.* keys, got {' '.join(bad)}; "
                             "to change anything else, run dlrun again")
        saved = run_dir / ".hydra" / "overrides.yaml"
        if not saved.is_file():
            raise DlrunError(f"{run_dir} has no .hydra/overrides.yaml: give the folder of a dlrun run")
        overrides = [o for o in (yaml.safe_load(saved.read_text()) or []) if not o.startswith("trainer.resume=")]
        keys = {o.split("=", 1)[0] for o in extra}
        overrides = [o for o in overrides if o.split("=", 1)[0] not in keys] + extra
        cfg = compose_checked(overrides, CONF_DIR)
        from dlrun import console
        from dlrun.pipeline import rebuild_report

        plain = OmegaConf.to_object(cfg)
        rebuild_report(plain, run_dir, overrides, ui=console.TerminalUI("false"))
    except DlrunError as err:
        _fail(str(err))


SUMMARY_USAGE = """usage: dlrun-summary SWEEP_DIR

Rebuild a sweep's summary (summary.json, .md, .csv, .html) from its job folders, and print it: for a sweep whose
launcher did not wait for its jobs (a detached Slurm sweep), a partly failed one, or jobs added by a resumed sweep.
Exits 0 when every job finished, 3 when one failed, was interrupted or has no report (never started, or running)."""


def summary_main(argv: list[str] | None = None) -> None:
    """`dlrun-summary SWEEP_DIR`: rebuild and print the summary of a sweep folder."""
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or argv[0] in ("-h", "--help"):
        print(SUMMARY_USAGE)
        sys.exit(0 if argv and argv[0] in ("-h", "--help") else 2)
    sweep_dir = Path(argv[0])
    if not sweep_dir.is_dir() or not any(p.is_dir() and (p / ".hydra").is_dir() for p in sweep_dir.iterdir()):
        _fail(f"{sweep_dir} is not a sweep folder: give the folder of a `dlrun -m` sweep (multirun/DATE/TIME, or "
              "its hydra.sweep.dir), whose job folders 0/, 1/, ... hold .hydra/")
    from dlrun.console import sweep_table
    from dlrun.errors import EXIT_JOBS_FAILED
    from dlrun.sweep.summary import complete, write_summary

    summary = write_summary(sweep_dir)
    sweep_table(summary, str(sweep_dir))
    if not complete(summary):  # a script that rebuilds the summary learns that the sweep is not whole
        sys.exit(EXIT_JOBS_FAILED)


def main() -> None:
    argv = sys.argv[1:]
    if "--help" in argv or "-h" in argv:
        from dlrun.help import help_text

        try:
            print(help_text(CONF_DIR, CommandLine(argv).config_dirs))
        except BrokenPipeError:  # dlrun --help | head: the reader has what it wanted
            sys.stderr.close()
        return
    # SIGINT and SIGTERM stop dlrun at once until a run has finished, and are held after it (_AfterTheRun);
    # training and the report hold them on their own (engine/loop.py catch_signals)
    _finished.listen()
    multirun = CommandLine(argv).multirun
    try:
        cfg = check_command_line(argv, CONF_DIR)
        prints_only = any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in argv)
        if cfg is not None and not prints_only:
            check_run_dir(cfg, argv)
        elif multirun and not prints_only:
            check_sweep_dir(argv)
        app()
        code = _sweep_end()
    except DlrunError as err:
        _fail(str(err))
    except KeyboardInterrupt as err:  # while the command line is checked, Hydra sets up, or a launcher waits for jobs
        _stop_at_once(err, None, _sweep_dir(argv) if multirun else None)
    finally:
        held = _finished.close()  # from here a signal is ignored: all that is left is this line and the exit
    if held:
        _finished.say(held)
    if code or _finished.exit_code:
        sys.exit(code or _finished.exit_code)


def _sweep_end() -> int:
    """Print the summary of the sweep that just ran (if one did) and its failed jobs; EXIT_JOBS_FAILED if a job
    failed, else 0."""
    from dlrun.sweep.callback import EXIT_JOBS_FAILED, FAILED_JOBS, LAST_SUMMARY

    if LAST_SUMMARY:
        from dlrun.console import sweep_table

        sweep_table(LAST_SUMMARY, LAST_SUMMARY["sweep_dir"])
    if not FAILED_JOBS:
        return 0
    _print_error(f"{len(FAILED_JOBS)} sweep job{'s' if len(FAILED_JOBS) > 1 else ''} failed "
                 f"({', '.join(FAILED_JOBS)}); their overrides and errors are in the sweep folder's summary.md")
    return EXIT_JOBS_FAILED

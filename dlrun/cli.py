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
from dlrun.preflight import CommandLine, check_command_line, compose_checked


def _conf_dir() -> str:
    """The packaged dlrun/conf in an installed wheel, else the repository's conf/ next to the package."""
    packaged = Path(__file__).resolve().parent / "conf"
    return str(packaged if packaged.is_dir() else packaged.parent.parent / "conf")


CONF_DIR = _conf_dir()
register_configs()


def _fail(message: str, code: int = 2) -> None:
    from rich.console import Console
    from rich.markup import escape

    # escaped: a message quotes the user's text, and logger=[tensorboard,mlflow] is not markup
    Console(stderr=True, highlight=False, soft_wrap=True).print(f"[bold red]dlrun error:[/] {escape(message)}")
    sys.exit(code)


def _drop_stub(run_dir: Path) -> None:
    """A run that stopped on a user error before writing anything leaves no folder behind: Hydra made it with its
    .hydra/ and log only (an error found while the data loads, say). A folder holding anything else is kept."""
    import contextlib
    import re
    import shutil

    if not run_dir.is_dir() or any(p.name != ".hydra" and p.suffix != ".log" for p in run_dir.iterdir()):
        return
    shutil.rmtree(run_dir, ignore_errors=True)
    if re.fullmatch(r"\d{4}-\d{2}-\d{2}", run_dir.parent.name):  # Hydra's outputs/DATE, when this was its only run
        with contextlib.suppress(OSError):
            run_dir.parent.rmdir()


def _sweep_dir(argv: list[str]) -> Path | None:
    """The running sweep's folder (a joblib or submitit launcher was waiting for its jobs): hydra.sweep.dir, or the
    one Hydra set up; None before it exists."""
    from hydra.core.hydra_config import HydraConfig

    chosen = _chosen(argv, "hydra.sweep.dir")
    folder = Path(chosen[-1]) if chosen else Path(HydraConfig.get().sweep.dir) if HydraConfig.initialized() else None
    return folder if folder is not None and folder.is_dir() else None


def _chosen(argv: list[str], key: str) -> list[str]:
    """The values the command line gives `key` (hydra.run.dir, hydra.sweep.dir), the last one Hydra's."""
    return [o.split("=", 1)[1] for o in CommandLine(argv).overrides if o.startswith(f"{key}=")]


def _terminate(signum: int, frame) -> None:
    raise KeyboardInterrupt(signum)


def _stop_at_once(err: KeyboardInterrupt, run_dir: Path | None, sweep_dir: Path | None = None) -> None:
    """A signal dlrun did not get to answer (before training, or a second one): say what it leaves on disk, and exit
    with 128 + its number. In a sweep, how to continue the sweep (its jobs keep their last checkpoints)."""
    import signal

    signum = err.args[0] if err.args and isinstance(err.args[0], int) else signal.SIGINT
    name = "Ctrl-C" if signum == signal.SIGINT else signal.Signals(signum).name
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
    if in_sweep:  # a new attempt at this job (a resumed sweep): an earlier failure no longer stands
        (Path(hc.runtime.output_dir) / "failure.json").unlink(missing_ok=True)
        if hc.launcher.get("_target_", "").endswith("BasicLauncher"):  # jobs one after another in this process:
            from dlrun.report import background  # draw each report's plots while the next job trains

            background.enable()
    try:
        validate(cfg)
        from dlrun import console
        from dlrun.pipeline import run

        plain = OmegaConf.to_object(cfg)
        result = run(plain, Path(hc.runtime.output_dir), overrides=list(hc.overrides.task), launch=launch_prefix(),
                     ui=console.TerminalUI(plain.trainer.progress), sweep_dir=Path(hc.sweep.dir) if in_sweep else None)
    except DlrunError as err:
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        if in_sweep:  # one failing combination does not end the sweep: record it, score it as the worst
            return _job_failed(hc, str(err), 2, "user error")
        _drop_stub(Path(hc.runtime.output_dir))
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
        _stop_at_once(err, Path(hc.runtime.output_dir), Path(hc.sweep.dir) if in_sweep else None)
        return None
    if result.skipped:
        from rich.console import Console

        Console(stderr=True, highlight=False, soft_wrap=True).print(
            f"dlrun: {result.run_dir} already holds a finished run (trainer.resume=auto): not trained again",
            markup=False)
    if result.signal:
        if in_sweep and hc.launcher.get("_target_", "").endswith("BasicLauncher"):  # this process runs the sweep
            from rich.console import Console

            Console(stderr=True, highlight=False, soft_wrap=True).print(
                f"the sweep stopped in job {hc.job.num}; to continue it (finished jobs are skipped, this one resumes "
                f"from its checkpoint): {sweep_resume_command(sys.argv[1:], Path(hc.sweep.dir))}", markup=False)
        _hand_on(result.signal)
        sys.exit(result.exit_code)
    if result.exit_code and not in_sweep:  # in a sweep a diverged or gated run is a finished job: the sweep goes on
        _explain_exit(result.report, result.exit_code, plain.report.fail_on)
        sys.exit(result.exit_code)
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
    if callable(handler) and handler not in (signal.default_int_handler, _terminate):
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
    import signal

    # until training installs its handlers (engine/loop.py catch_signals), SIGTERM stops dlrun as Ctrl-C does
    signal.signal(signal.SIGTERM, _terminate)
    try:
        cfg = check_command_line(argv, CONF_DIR)
        prints_only = any(a in ("--cfg", "-c") or a.startswith("--cfg=") for a in argv)
        if cfg is not None and not prints_only:
            check_run_dir(cfg, argv)
        elif CommandLine(argv).multirun and not prints_only:
            check_sweep_dir(argv)
        app()
    except DlrunError as err:
        _fail(str(err))
    except KeyboardInterrupt as err:  # while the command line is checked, Hydra sets up, or a launcher waits for jobs
        _stop_at_once(err, None, _sweep_dir(argv) if CommandLine(argv).multirun else None)
    from dlrun.sweep.callback import EXIT_JOBS_FAILED, FAILED_JOBS, LAST_SUMMARY

    if LAST_SUMMARY:
        from dlrun.console import sweep_table

        sweep_table(LAST_SUMMARY, LAST_SUMMARY["sweep_dir"])
    if FAILED_JOBS:
        _fail(f"{len(FAILED_JOBS)} sweep job{'s' if len(FAILED_JOBS) > 1 else ''} failed ({', '.join(FAILED_JOBS)}); "
              "their overrides and errors are in the sweep folder's summary.md", code=EXIT_JOBS_FAILED)


# what makes a folder hold a run: checking before Hydra writes .hydra/ into it keeps the earlier run untouched
RUN_FILES = ("checkpoints", "report.json", "metrics.csv")


def check_run_dir(cfg: DictConfig, argv: list[str]) -> None:
    """Refuse a run folder that already holds a run, unless the user resumes it or says trainer.overwrite=true."""
    chosen = _chosen(argv, "hydra.run.dir")
    if chosen and not chosen[-1].strip():  # Hydra would write into the current folder
        raise DlrunError("hydra.run.dir= is empty: give the folder to write the run into, or leave the key out "
                         "for outputs/DATE/TIME")
    run_dir = Path(chosen[-1]).expanduser() if chosen else Path("outputs")  # Hydra's default: outputs/DATE/TIME
    try:
        run_dir.mkdir(parents=True, exist_ok=True)  # Hydra would create it next, with a traceback if it cannot
    except OSError as err:
        key = f"hydra.run.dir={chosen[-1]}" if chosen else f"the run folder {run_dir.resolve()}"
        raise DlrunError(f"{key} cannot be created: {err.strerror or err}; choose a folder you can write to "
                         "with hydra.run.dir=PATH") from None
    if not chosen:
        return  # Hydra's default folder is new for every run (a timestamp)
    jobs = _job_folders(run_dir)
    if jobs:
        raise DlrunError(f"hydra.run.dir={chosen[-1]} holds a sweep (jobs {', '.join(p.name for p in jobs)}): a "
                         "single run goes to another folder")
    if cfg.trainer.resume:  # checked before Hydra writes this run's .hydra/ over the earlier run's
        from dlrun.pipeline import check_resume_here

        check_resume_here(OmegaConf.to_object(cfg), run_dir)
        return
    if cfg.trainer.overwrite:
        return
    held = [name for name in RUN_FILES if (run_dir / name).exists()]
    if held:
        raise DlrunError(f"hydra.run.dir={chosen[-1]} already holds a run ({', '.join(held)}): choose another "
                         f"folder, continue it with trainer.resume={chosen[-1]}, or replace it with "
                         "trainer.overwrite=true")


def _job_folders(folder: Path) -> list[Path]:
    """The job folders of a sweep in `folder` (0/, 1/, ... holding .hydra/), in job order."""
    if not folder.is_dir():
        return []
    return sorted((p for p in folder.iterdir() if p.name.isdigit() and (p / ".hydra").is_dir()),
                  key=lambda p: int(p.name))


def check_sweep_dir(argv: list[str]) -> None:
    """The sweep's rule for its folder, before Hydra writes into it: a hydra.sweep.dir that holds an earlier sweep's
    jobs is refused, unless trainer.resume=auto continues that same sweep (job i's folder must hold a run of this
    command's job i: same overrides, but for those a resume may change) or trainer.overwrite=true replaces it (its
    job folders and summary are removed first, so the summary covers only the new jobs)."""
    import shutil

    import yaml

    from dlrun.pipeline import RESUME_MAY_CHANGE
    from dlrun.preflight import job_overrides
    from dlrun.sweep.summary import parse_overrides

    overrides = CommandLine(argv).overrides
    chosen = _chosen(argv, "hydra.sweep.dir")
    if not chosen:
        return  # Hydra's default folder is new for every sweep (a timestamp)
    if not chosen[-1].strip():
        raise DlrunError("hydra.sweep.dir= is empty: give the sweep's folder, or leave the key out for "
                         "multirun/DATE/TIME")
    sweep_dir = Path(chosen[-1]).expanduser()
    held = [name for name in RUN_FILES if (sweep_dir / name).exists()]
    if held:
        raise DlrunError(f"hydra.sweep.dir={chosen[-1]} holds a single run ({', '.join(held)}): a sweep goes to "
                         "another folder")
    jobs = _job_folders(sweep_dir)
    if not jobs:
        return
    value = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    resume, overwrite = value.get("trainer.resume", ""), value.get("trainer.overwrite", "false").lower() == "true"
    if overwrite:
        for job in jobs:
            shutil.rmtree(job)
        for old in [*sweep_dir.glob("summary*.*"), sweep_dir / "sweep.json"]:
            old.unlink(missing_ok=True)
        return
    if resume != "auto":
        raise DlrunError(f"hydra.sweep.dir={chosen[-1]} already holds a sweep (jobs {', '.join(p.name for p in jobs)}): "
                         "choose another folder, continue it with trainer.resume=auto (the same command), or replace "
                         "it with trainer.overwrite=true")
    planned = job_overrides(overrides)
    if planned is None:
        return  # a search: each job checks its own folder (pipeline.check_auto_resume)

    def settings(items: list[str]) -> dict[str, str]:
        return {k: v for k, v in parse_overrides(items).items() if k not in RESUME_MAY_CHANGE}

    for job in jobs:
        saved_path = job / ".hydra" / "overrides.yaml"
        saved = settings(yaml.safe_load(saved_path.read_text()) or []) if saved_path.is_file() else {}
        now = settings(planned[int(job.name)]) if int(job.name) < len(planned) else None
        if now is None or saved != now:
            differ = [k for k in {**saved, **(now or {})} if now is None or saved.get(k) != now.get(k)]
            ran = " ".join(f"{k}={saved[k]}" if k in saved else f"no {k}" for k in differ) or "the defaults"
            wants = "no job" if now is None else " ".join(f"{k}={now[k]}" if k in now else f"no {k}" for k in differ)
            raise DlrunError(f"hydra.sweep.dir={chosen[-1]} holds another sweep: its job {job.name} ran {ran}, this "
                             f"command's job {job.name} is {wants}; trainer.resume=auto continues a sweep only with "
                             "the same command: choose another folder, or replace it with trainer.overwrite=true")

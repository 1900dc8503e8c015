"""A Hydra callback that writes the summary of a sweep once every job has finished (`dlrun -m ...`), and at the
start of the sweep makes Hydra compose the jobs once per choice of config groups (dlrun/sweep/compose.py).

It reads each job's report.json (the versioned contract), so it works the same for the basic launcher, joblib and
Slurm through submitit: Hydra calls `on_multirun_end` in the launching process after the launcher returns.
Output, in the sweep folder (dlrun/sweep/summary.py): summary.json, summary.md, summary.csv and summary.html (one row
per job, best monitored validation metric first, plots against each swept parameter, k-fold means, then the jobs that
failed with their overrides, error and exit status).

A job that fails (a user error in one combination, an exception) does not end the sweep: cli.py records it in the
job folder as failure.json (`record_failure`) and returns the worst objective, so the other jobs run and this
summary lists it; the sweep then exits with EXIT_JOBS_FAILED.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from dlrun.sweep.summary import FINDINGS, SCHEMA_VERSION, fmt, ranked_cell, summarize, write_summary  # noqa: F401

log = logging.getLogger(__name__)

from dlrun.errors import EXIT_JOBS_FAILED  # noqa: E402,F401 - the exit status of a sweep with a failed job
FAILED_JOBS: list[str] = []  # set by the last on_multirun_end in this process, read by cli.main
LAST_SUMMARY: dict = {}  # the last summary written in this process, for cli.main to print


def record_failure(job_dir: Path, overrides: list[str], error: str, exit_status: int, kind: str) -> None:
    """Write failure.json in a job's folder (atomically: a temp file, then a rename)."""
    import os
    import tempfile

    job_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"overrides": list(overrides), "error": error, "exit_status": exit_status, "kind": kind},
                      indent=2) + "\n"
    fd, tmp = tempfile.mkstemp(dir=job_dir, prefix=".failure.json.", suffix=".tmp")
    with os.fdopen(fd, "w") as f:
        f.write(text)
    os.replace(tmp, job_dir / "failure.json")


def compose_once_per_choice() -> None:
    """Give the running Hydra app dlrun's config loader (dlrun/sweep/compose.py) before it sets up the sweeper, which
    hands the app's loader to its batch check and to the launcher: every sweeper and launcher then composes a job
    from one composition per choice of config groups."""
    from hydra.core.global_hydra import GlobalHydra

    from dlrun.sweep.compose import ComposeOncePerChoice

    app = GlobalHydra.instance().hydra
    if app is not None and not isinstance(app.config_loader, ComposeOncePerChoice):
        app.config_loader = ComposeOncePerChoice(app.config_loader)


def write_plan(config: Any) -> None:
    """sweep.json in the sweep folder: every job's overrides of a basic sweep, in job order, so that a summary of a
    sweep killed before its last jobs lists them as missing (a search, such as Optuna, has no plan to write)."""
    from omegaconf import OmegaConf

    from dlrun.engine.checkpoint import atomic_write_text
    from dlrun.preflight import job_overrides
    from dlrun.sweep.summary import PLAN

    sweeper = config.hydra.sweeper
    if not str(sweeper.get("_target_", "")).endswith("BasicSweeper") or sweeper.get("params"):
        return
    jobs = job_overrides(list(OmegaConf.to_container(config.hydra.overrides.task)))
    sweep_dir = Path(config.hydra.sweep.dir)
    sweep_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(sweep_dir / PLAN, json.dumps({"jobs": jobs}, indent=2) + "\n")


class SweepSummary(Callback):
    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        compose_once_per_choice()  # Hydra calls this just before it instantiates the sweeper
        write_plan(config)
        if config.get("logger") and config.logger.get("mlflow"):  # one MLflow parent run, before any job starts
            from omegaconf import OmegaConf

            from dlrun import loggers

            loggers.start_sweep(OmegaConf.to_object(config.logger), Path(config.hydra.sweep.dir),
                                list(config.hydra.overrides.task))

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        from dlrun.cli import hold_signals_after_jobs
        from dlrun.report import background

        sweep_dir = Path(config.hydra.sweep.dir)
        hold_signals_after_jobs(sweep_dir)  # a signal from here is held until the summary is written (cli.py)
        background.shutdown()  # every job's plots and report.html are written before the summary links them
        if not sweep_dir.is_dir():
            return
        summary = write_summary(sweep_dir)
        from dlrun import loggers

        loggers.finish_sweep(sweep_dir, summary)  # MLflow: the jobs' late-drawn plots, then close the parent run
        FAILED_JOBS[:] = [r["job"] for r in summary["failed"]]
        LAST_SUMMARY.clear()
        LAST_SUMMARY.update(summary, sweep_dir=str(sweep_dir))
        for r in summary["failed"]:
            log.error("job %s (%s) failed: %s", r["job"], " ".join(r["overrides"]), r["error"])
        if summary["best"] is not None:
            best = summary["jobs"][0]
            log.info("sweep summary: %s; best job %s (%s), %s %s", sweep_dir / "summary.html", best["job"],
                     " ".join(best["overrides"]), summary["rank_by"]["metric"], ranked_cell(best, summary))

"""A Hydra callback that writes the summary of a sweep once every job has finished (`dlrun -m ...`).

It reads each job's report.json (the versioned contract), so it works the same for the basic launcher, joblib and
Slurm through submitit: Hydra calls `on_multirun_end` in the launching process after the launcher returns.
Output, in the sweep folder: summary.json, summary.md (one row per job, best validation error first, then the jobs
that failed with their overrides, error and exit status).

A job that fails (a user error in one combination, an exception) does not end the sweep: cli.py records it in the
job folder as failure.json (`record_failure`) and returns the worst objective, so the other jobs run and this
summary lists it; the sweep then exits with EXIT_JOBS_FAILED.
"""

from __future__ import annotations

import json
import logging
import shlex
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

log = logging.getLogger(__name__)

SCHEMA_VERSION = 2  # 2: failed jobs, data_mismatch verdict
FINDINGS = ("underfitting", "overfitting", "data_mismatch", "distribution_shift")
EXIT_JOBS_FAILED = 3  # the exit status of a sweep in which at least one job failed
FAILED_JOBS: list[str] = []  # set by the last on_multirun_end in this process, read by cli.main


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


def summarize(reports: dict[str, dict]) -> dict:
    """{job folder: report.json content} -> the summary (jobs sorted by validation error, best first)."""
    rows = []
    for job, report in reports.items():
        metrics = report.get("metrics", {})
        rows.append({
            "job": job,
            "overrides": report["run"]["overrides"],
            "val_error": metrics.get("val", {}).get("error"),
            "test_error": metrics.get("test", {}).get("error"),
            "train_error": metrics.get("train", {}).get("error"),
            "best_epoch": report["run"]["best_epoch"],
            "stop_reason": report["run"]["stop_reason"],
            "verdicts": {f: (report["diagnosis"][f]["severity"] if report["diagnosis"][f]["detected"] else "no")
                         for f in FINDINGS if f in report["diagnosis"]},
        })
    rows.sort(key=lambda r: (r["val_error"] is None, r["val_error"] if r["val_error"] is not None else 0.0))
    return {"schema_version": SCHEMA_VERSION, "jobs": rows, "best": rows[0]["job"] if rows else None}


def _fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def render_markdown(summary: dict, missing: list[str]) -> str:
    lines = ["# dlrun sweep summary", "", f"{len(summary['jobs'])} jobs, sorted by validation error (best first).", "",
             "| job | overrides | train | val | test | best epoch | stop | underfitting | overfitting | shift |",
             "|---|---|---:|---:|---:|---:|---|---|---|---|"]
    for r in summary["jobs"]:
        v = r["verdicts"]
        lines.append(f"| {r['job']} | `{' '.join(shlex.quote(o) for o in r['overrides'])}` | {_fmt(r['train_error'])} | "
                     f"{_fmt(r['val_error'])} | {_fmt(r['test_error'])} | {r['best_epoch']} | {r['stop_reason']} | "
                     f"{v['underfitting']} | {v['overfitting']} | {v['distribution_shift']} |")
    failed = summary.get("failed", [])
    if failed:
        lines += ["", f"## {len(failed)} failed job{'s' if len(failed) > 1 else ''}", "",
                  "| job | overrides | exit status | error |", "|---|---|---:|---|"]
        for r in failed:
            error = r["error"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['job']} | `{' '.join(shlex.quote(o) for o in r['overrides'])}` | {r['exit_status']} | "
                         f"{error} |")
    if missing:
        lines += ["", "Jobs without a report.json or a failure.json (still running, or killed): " + ", ".join(missing)]
    return "\n".join(lines) + "\n"


def write_summary(sweep_dir: Path) -> dict:
    """Read every job's report.json under sweep_dir; write summary.json and summary.md next to them."""
    from dlrun.engine.checkpoint import atomic_write_text

    reports, missing, failed = {}, [], []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: (len(p.name), p.name)):
        path = job / "report.json"
        if (job / "failure.json").is_file():  # checked first: a resumed folder may hold an older report
            failed.append({"job": job.name, **json.loads((job / "failure.json").read_text())})
        elif path.is_file():
            reports[job.name] = json.loads(path.read_text())
        else:
            missing.append(job.name)
    summary = summarize(reports)
    summary["missing"], summary["failed"] = missing, failed
    atomic_write_text(sweep_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    atomic_write_text(sweep_dir / "summary.md", render_markdown(summary, missing))
    return summary


class SweepSummary(Callback):
    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        summary = write_summary(sweep_dir)
        FAILED_JOBS[:] = [r["job"] for r in summary["failed"]]
        for r in summary["failed"]:
            log.error("job %s (%s) failed: %s", r["job"], " ".join(r["overrides"]), r["error"])
        if summary["best"] is not None:
            best = summary["jobs"][0]
            log.info("sweep summary: %s; best job %s (%s), val error %s", sweep_dir / "summary.md", best["job"],
                     " ".join(best["overrides"]), _fmt(best["val_error"]))

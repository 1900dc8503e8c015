"""The summary of a sweep, built from its job folders: one row per job (its report.json, or failure.json), ranked by
the monitored validation metric (early_stop.monitor and mode: what a sweeper optimised), the swept parameters, and
for k-fold sweeps the mean and standard deviation across folds of every other setting.

Written into the sweep folder as summary.json (versioned), summary.md, summary.csv and a self-contained summary.html
with a plot of the monitored metric against each swept parameter. `write_summary` is what the Hydra callback and
`dlrun-summary SWEEP_DIR` call; everything else here is pure.
"""

from __future__ import annotations

import csv
import io
import json
import math
import shlex
from pathlib import Path
from typing import Any, Optional

SCHEMA_VERSION = 3  # 3: objective and rank_by, swept parameters, k-fold groups, status per job
FINDINGS = ("underfitting", "overfitting", "data_mismatch", "distribution_shift")


def parse_overrides(overrides: list[str]) -> dict[str, str]:
    """["reg.dropout=0.5", "+x=1"] -> {"reg.dropout": "0.5", "x": "1"} (the last value of a key wins)."""
    out = {}
    for item in overrides:
        key, sep, value = item.partition("=")
        key = key.lstrip("+~")
        if sep and not (key == "trainer.overwrite" or (key, value) == ("trainer.resume", "auto")):
            out[key] = value  # not how the jobs were run (a resumed or replaced sweep): what they trained
    return out


def _number(value: str) -> Optional[float]:
    try:
        x = float(value)
    except (TypeError, ValueError):
        return None
    return x if math.isfinite(x) else None


# how the sweep ran its jobs, not what a job is: left out of the command that reruns the best job alone
SWEEP_ONLY = ("trainer.resume", "trainer.overwrite")
PLAN = "sweep.json"  # written when a basic sweep starts: every job's overrides, so that a job never started is missing


def _row(job: str, report: dict) -> dict:
    metrics, run = report.get("metrics", {}), report["run"]
    objective = run.get("objective") or {"monitor": "val_error", "mode": "min",
                                         "value": metrics.get("val", {}).get("error")}
    alone = [o for o in run["overrides"] if o.split("=", 1)[0].lstrip("+~") not in SWEEP_ONLY]
    return {
        # an interrupted job's report describes a partial training: listed, never ranked above a finished job
        "job": job, "status": "interrupted" if run.get("interrupted") else "done", "overrides": run["overrides"],
        "params": parse_overrides(run["overrides"]),
        # the job alone, started the way the sweep was (--config-dir, torchrun): what to rerun or build on
        "command": " ".join([run.get("launch", "dlrun"), command(alone)]),
        "monitor": objective["monitor"], "mode": objective["mode"], "objective": objective["value"],
        "task": run.get("task"),
        "train_error": metrics.get("train", {}).get("error"), "val_error": metrics.get("val", {}).get("error"),
        "test_error": metrics.get("test", {}).get("error"), "best_epoch": run["best_epoch"],
        **{f"{split}_interval": metrics.get(split, {}).get("error_interval") for split in ("train", "val", "test")},
        "stop_reason": run["stop_reason"], "wall_seconds": run.get("wall_seconds"),
        "interval_level": run.get("interval_level", 0.95),
        "verdicts": {f: (report["diagnosis"][f]["severity"] if report["diagnosis"][f]["detected"] else "no")
                     for f in FINDINGS if f in report["diagnosis"]},
    }


def _ranking(rows: list[dict]) -> tuple[str, str, Any]:
    """(metric, mode, sort key): the jobs' common monitored metric, else validation error (when the sweep changes
    early_stop.monitor, its values are not comparable across jobs)."""
    monitors = {(r["monitor"], r["mode"]) for r in rows}
    if len(monitors) == 1:
        metric, mode = monitors.pop()
        field = "objective"
    else:
        metric, mode, field = "val_error", "min", "val_error"
    sign = -1.0 if mode == "max" else 1.0

    def key(row: dict) -> tuple:
        value = row[field]
        return (row["status"] != "done", value is None, sign * value if value is not None else 0.0,
                len(row["job"]), row["job"])

    return metric, mode, key


def summarize(reports: dict[str, dict], failed: Optional[list[dict]] = None,
              missing: Optional[list[str]] = None, sweep_dir: Optional[Path] = None) -> dict:
    """{job folder: report.json content} (+ failure.json contents) -> the summary, best job first. With the sweep
    folder, the runner-up is compared with the best job sample by sample (their predictions.csv)."""
    rows = [_row(job, report) for job, report in reports.items()]
    metric, mode, key = _ranking(rows)
    rows.sort(key=key)
    runner_up = None
    done = [r for r in rows if r["status"] == "done"]
    if sweep_dir is not None and len(done) > 1:
        from dlrun.report.predictions import compare, read_val

        best, second = rows[0], rows[1]
        runner_up = {"job": second["job"], "against": best["job"],
                     **compare(best["task"], read_val(Path(sweep_dir) / best["job"]),
                               read_val(Path(sweep_dir) / second["job"]))}
    failed = [{**r, "params": parse_overrides(r["overrides"])} for r in (failed or [])]
    every = [r["params"] for r in rows + failed]
    keys = sorted({k for params in every for k in params})
    swept = [k for k in keys if len({params.get(k) for params in every}) > 1]
    return {"schema_version": SCHEMA_VERSION, "rank_by": {"metric": metric, "mode": mode}, "swept": swept,
            "jobs": rows, "best": done[0]["job"] if done else None, "runner_up": runner_up,
            "failed": failed, "missing": list(missing or []),
            "folds": fold_groups(rows, swept)}


def fold_groups(rows: list[dict], swept: list[str]) -> Optional[list[dict]]:
    """k-fold sweeps (split.fold swept): mean and sample standard deviation across folds of each other setting."""
    import numpy as np

    if "split.fold" not in swept:
        return None
    others = [k for k in swept if k != "split.fold"]
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault(tuple(row["params"].get(k) for k in others), []).append(row)
    out = []
    for setting, members in groups.items():
        entry = {"setting": dict(zip(others, setting)), "folds": len(members),
                 "jobs": sorted((m["job"] for m in members), key=lambda j: (len(j), j))}
        for field in ("objective", "val_error", "test_error"):
            values = np.array([m[field] for m in members if m[field] is not None], dtype=float)
            entry[f"{field}_mean"] = float(values.mean()) if len(values) else None
            entry[f"{field}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        out.append(entry)
    sign = -1.0 if rows and rows[0]["mode"] == "max" else 1.0
    out.sort(key=lambda g: (g["objective_mean"] is None, sign * (g["objective_mean"] or 0.0)))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# files


def fmt(value: Any) -> str:
    return "n/a" if value is None else f"{value:.4f}" if isinstance(value, float) else str(value)


def with_interval(value: Any, interval: Any) -> str:
    """0.0250 [0.0129, 0.0467]: an error with its 95% interval (report.json's error_interval), when it has one."""
    if not interval or None in interval:
        return fmt(value)
    return f"{fmt(value)} [{interval[0]:.4f}, {interval[1]:.4f}]"


def runner_up_sentence(summary: dict) -> str:
    """The runner-up's validation error against the best job's on the same samples: whether the sweep can tell the
    two apart at all. '' with fewer than two jobs."""
    from dlrun.report.predictions import difference_text, verdict_text

    vs = summary.get("runner_up")
    if not vs:
        return ""
    head = f"Job {vs['job']} (second) against job {vs['against']} (best), validation error"
    if "note" in vs:
        return f"{head}: {vs['note']}; compare their intervals."
    task = summary["jobs"][0].get("task")
    if vs["confirmed"] == "higher":
        meaning = "the best job's lower validation error is confirmed"
    elif vs["confirmed"] == "lower":
        meaning = ("the second job's validation error is lower, confirmed (the ranking is by "
                   f"{summary['rank_by']['metric']})")
    else:
        meaning = "the sweep cannot tell these two apart on validation error"
    return f"{head} on the same {vs['n']} samples: {difference_text(vs, task)}, {verdict_text(vs)}: {meaning}."


def interval_words(summary: dict) -> str:
    """The confidence of the jobs' intervals (1 - report.alpha): "95%", or what it is when jobs differ."""
    levels = {r.get("interval_level", 0.95) for r in summary["jobs"]}
    return f"{100 * levels.pop():.3g}%" if len(levels) == 1 else "(each job's 1 - report.alpha)"


def tally(summary: dict) -> str:
    """"4 jobs: 2 finished, 1 interrupted, 1 failed": every job of the sweep, by what became of it."""
    parts = {"finished": sum(r["status"] == "done" for r in summary["jobs"]),
             "interrupted": sum(r["status"] != "done" for r in summary["jobs"]),
             "failed": len(summary["failed"]), "without a report": len(summary["missing"])}
    total = sum(parts.values())
    return f"{total} job{'s' if total != 1 else ''}: " + ", ".join(f"{n} {what}" for what, n in parts.items()
                                                                 if n or what == "finished")


def complete(summary: dict) -> bool:
    """Every planned job finished (none failed, interrupted or missing)."""
    return not summary["failed"] and not summary["missing"] and all(r["status"] == "done" for r in summary["jobs"])


def command(overrides: list[str]) -> str:
    return " ".join(shlex.quote(o) for o in overrides)


def render_markdown(summary: dict) -> str:
    rank = summary["rank_by"]
    lines = ["# dlrun sweep summary", "",
             f"{tally(summary)}; ranked by {rank['metric']} ({rank['mode']}), best first (an interrupted job last: "
             "its figures describe a partial training).", "",
             f"| job | overrides | {rank['metric']} | train error | val error | test error | best epoch | stop | "
             "underfitting | overfitting | shift |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in summary["jobs"]:
        v = r["verdicts"]
        errors = " | ".join(with_interval(r[f"{split}_error"], r.get(f"{split}_interval"))
                            for split in ("train", "val", "test"))
        lines.append(f"| {r['job']} | `{command(r['overrides'])}` | {fmt(r['objective'])} | {errors} | "
                     f"{r['best_epoch']} | {r['stop_reason']} | "
                     f"{v.get('underfitting')} | {v.get('overfitting')} | {v.get('distribution_shift')} |")
    if summary["best"] is not None:
        lines += ["", f"Errors with their {interval_words(summary)} intervals. " + runner_up_sentence(summary), "",
                  "The best job alone:", "", "```bash", summary["jobs"][0]["command"], "```"]
    if summary["folds"]:
        lines += ["", "## Cross-validation: mean and standard deviation across folds", "",
                  "| setting | folds | " + rank["metric"] + " | val error | test error |", "|---|---:|---:|---:|---:|"]
        for g in summary["folds"]:
            cells = [f"{fmt(g[f + '_mean'])} ± {fmt(g[f + '_std'])}" for f in ("objective", "val_error", "test_error")]
            setting = " ".join(f"{k}={v}" for k, v in g["setting"].items()) or "(all jobs)"
            lines.append(f"| `{setting}` | {g['folds']} | " + " | ".join(cells) + " |")
    failed = summary["failed"]
    if failed:
        lines += ["", f"## {len(failed)} failed job{'s' if len(failed) > 1 else ''}", "",
                  "| job | overrides | exit status | error |", "|---|---|---:|---|"]
        for r in failed:
            error = r["error"].replace("|", "\\|").replace("\n", " ")
            lines.append(f"| {r['job']} | `{command(r['overrides'])}` | {r['exit_status']} | {error} |")
    if summary["missing"]:
        lines += ["", "Jobs without a report.json or a failure.json (still running, killed, or never started): "
                  + ", ".join(summary["missing"])]
    return "\n".join(lines) + "\n"


def render_csv(summary: dict) -> str:
    """One row per job (done and failed), one column per swept parameter; each error with its 95% interval's bounds
    (`val_error_low`, `val_error_high`, ...)."""
    swept = summary["swept"]
    errors = [f"{split}_error{part}" for split in ("train", "val", "test") for part in ("", "_low", "_high")]
    fields = ["job", "status", *swept, summary["rank_by"]["metric"], *errors,
              "best_epoch", "stop_reason", *FINDINGS, "exit_status", "error", "overrides"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in summary["jobs"]:
        bounds = {f"{split}_error_{side}": bound for split in ("train", "val", "test")
                  for side, bound in zip(("low", "high"), r.get(f"{split}_interval") or ("", ""))}
        writer.writerow({**{k: r["params"].get(k, "") for k in swept}, **r, **r["verdicts"], **bounds,
                         summary["rank_by"]["metric"]: r["objective"] if "objective" in r else "",
                         "overrides": command(r["overrides"])})
    for r in summary["failed"]:
        writer.writerow({**{k: r["params"].get(k, "") for k in swept}, "job": r["job"], "status": "failed",
                         "exit_status": r["exit_status"], "error": r["error"], "overrides": command(r["overrides"])})
    return buf.getvalue()


def read_jobs(sweep_dir: Path) -> tuple[dict[str, dict], list[dict], list[str]]:
    """(reports, failures, missing) of the job folders under sweep_dir, in job order."""
    reports, failed, missing = {}, [], []
    for job in sorted((p for p in sweep_dir.iterdir() if p.is_dir() and not p.name.startswith(".")),
                      key=lambda p: (len(p.name), p.name)):
        if (job / "failure.json").is_file():  # checked first: a resumed folder may hold an older report
            failed.append({"job": job.name, **json.loads((job / "failure.json").read_text())})
        elif (job / "report.json").is_file():
            reports[job.name] = json.loads((job / "report.json").read_text())
        else:
            missing.append(job.name)
    plan = sweep_dir / PLAN
    if plan.is_file():  # jobs the sweep planned that never got a folder (a sweep killed before them)
        planned = json.loads(plan.read_text()).get("jobs", [])
        seen = set(reports) | {r["job"] for r in failed} | set(missing)
        missing += [str(i) for i in range(len(planned)) if str(i) not in seen]
    return reports, failed, missing


def write_summary(sweep_dir: Path, plots: bool = True) -> dict:
    """Read every job folder under sweep_dir; write summary.json, .md, .csv and .html next to them."""
    from dlrun.engine.checkpoint import atomic_write_text
    from dlrun.report.render import clean
    from dlrun.sweep import render

    sweep_dir = Path(sweep_dir)
    summary = summarize(*read_jobs(sweep_dir), sweep_dir=sweep_dir)
    atomic_write_text(sweep_dir / "summary.json", json.dumps(clean(summary), indent=2) + "\n")
    atomic_write_text(sweep_dir / "summary.md", render_markdown(summary))
    atomic_write_text(sweep_dir / "summary.csv", render_csv(summary))
    atomic_write_text(sweep_dir / "summary.html", render.html(summary, plots=plots))
    return summary

"""The summary of a sweep, built from its job folders: one row per job (its report.json, or failure.json), ranked by
the monitored validation metric (early_stop.monitor and mode: what a sweeper optimised) with its interval when
report.json has one, the swept parameters, the runner-up against the best job on the ranking metric, and for k-fold
sweeps the mean and standard deviation across folds of every other setting.

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

# 3: objective and rank_by, swept parameters, k-fold groups, status per job; 4: objective_interval and
# objective_evaluated per job, runner_up on the ranking metric (its metric and level, the error comparison under error);
# 5: k-fold groups' ranked_mean/ranked_std (the ranking metric, rank_by) replace objective_mean/objective_std (each
# job's own monitor, not comparable when the sweep changes early_stop.monitor)
SCHEMA_VERSION = 5
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


# monitor -> the report.json figures of the weights a job ended on (metrics.val) that it names. train_loss and
# train_error are not there: the history's are running means over each epoch's training batches (dropout on,
# augmented), not metrics.train (evaluated in eval mode at the end), so no interval is known for them
EVALUATED = {"val_loss": ("loss", "loss_interval"), "val_error": ("error", "error_interval")}
# the training loop's validation pass and the final evaluation sum in a different order (and under autocast): 1e-8
# apart on CPU in float32; another epoch's weights are a different value
SAME_VALUE = 1e-3


def _objective_interval(objective: dict, metrics: dict) -> tuple[Optional[list], Optional[dict]]:
    """(the interval of the ranked value, else None; {value, interval} of the weights evaluated when the ranked value
    is not theirs: a diverged run, ranked worst; a report from an older dlrun, whose objective was the best value
    recorded in training)."""
    names = EVALUATED.get(objective["monitor"])
    value = objective["value"]
    evaluated = metrics.get("val", {}).get(names[0]) if names else None
    if evaluated is None or not math.isfinite(evaluated):
        return None, None
    interval = metrics["val"].get(names[1])  # None in reports written before the loss had one
    if value is None:  # no finite value to rank by (a run that diverged): its evaluated weights' value still counts
        return None, {"value": evaluated, "interval": interval}
    if math.isclose(value, evaluated, rel_tol=SAME_VALUE, abs_tol=1e-12):
        return interval, None
    return None, {"value": evaluated, "interval": interval}


def _row(job: str, report: dict) -> dict:
    metrics, run = report.get("metrics", {}), report["run"]
    objective = run.get("objective") or {"monitor": "val_error", "mode": "min",
                                         "value": metrics.get("val", {}).get("error")}
    objective_interval, objective_evaluated = _objective_interval(objective, metrics)
    alone = [o for o in run["overrides"] if o.split("=", 1)[0].lstrip("+~") not in SWEEP_ONLY]
    return {
        # an interrupted job's report describes a partial training: listed, never ranked above a finished job
        "job": job, "status": "interrupted" if run.get("interrupted") else "done", "overrides": run["overrides"],
        "params": parse_overrides(run["overrides"]),
        # the job alone, started the way the sweep was (--config-dir, torchrun): what to rerun or build on
        "command": " ".join([run.get("launch", "dlrun"), command(alone)]),
        "monitor": objective["monitor"], "mode": objective["mode"], "objective": objective["value"],
        "objective_interval": objective_interval, "objective_evaluated": objective_evaluated,
        "task": run.get("task"),
        "train_error": metrics.get("train", {}).get("error"), "val_error": metrics.get("val", {}).get("error"),
        "test_error": metrics.get("test", {}).get("error"), "best_epoch": run["best_epoch"],
        **{f"{split}_interval": metrics.get(split, {}).get("error_interval") for split in ("train", "val", "test")},
        "stop_reason": run["stop_reason"], "wall_seconds": run.get("wall_seconds"),
        "interval_level": run.get("interval_level", 0.95),
        "verdicts": {f: (report["diagnosis"][f]["severity"] if report["diagnosis"][f]["detected"] else "no")
                     for f in FINDINGS if f in report["diagnosis"]},
    }


def _ranked_field(rows: list[dict]) -> str:
    """The row field jobs are ranked by: "objective", the jobs' common monitored metric, else "val_error" (when the
    sweep changes early_stop.monitor, its values are not comparable across jobs)."""
    return "objective" if len({(r["monitor"], r["mode"]) for r in rows}) <= 1 else "val_error"


def ranked(row: dict, summary: dict) -> tuple[Any, Any]:
    """(value, interval or None) of a job's ranking metric, as the summary's table shows it."""
    if _ranked_field(summary["jobs"]) == "val_error":
        return row["val_error"], row.get("val_interval")
    return row["objective"], row.get("objective_interval")


def _ranking(rows: list[dict]) -> tuple[str, str, str, Any]:
    """(row field, metric, mode, sort key) of the ranking (_ranked_field)."""
    field = _ranked_field(rows)
    if field == "objective":
        metric, mode = (rows[0]["monitor"], rows[0]["mode"]) if rows else ("val_error", "min")
    else:
        metric, mode = "val_error", "min"
    sign = -1.0 if mode == "max" else 1.0

    def key(row: dict) -> tuple:
        value = row[field]
        return (row["status"] != "done", value is None, sign * value if value is not None else 0.0,
                len(row["job"]), row["job"])

    return field, metric, mode, key


def summarize(reports: dict[str, dict], failed: Optional[list[dict]] = None,
              missing: Optional[list[str]] = None, sweep_dir: Optional[Path] = None) -> dict:
    """{job folder: report.json content} (+ failure.json contents) -> the summary, best job first. With the sweep
    folder, the runner-up is compared with the best job sample by sample on the ranking metric (versus)."""
    rows = [_row(job, report) for job, report in reports.items()]
    field, metric, mode, key = _ranking(rows)
    rows.sort(key=key)
    runner_up = None
    done = [r for r in rows if r["status"] == "done"]
    if sweep_dir is not None and len(done) > 1:
        runner_up = versus(rows[0], rows[1], metric, Path(sweep_dir))
    failed = [{**r, "params": parse_overrides(r["overrides"])} for r in (failed or [])]
    every = [r["params"] for r in rows + failed]
    keys = sorted({k for params in every for k in params})
    swept = [k for k in keys if len({params.get(k) for params in every}) > 1]
    return {"schema_version": SCHEMA_VERSION, "rank_by": {"metric": metric, "mode": mode}, "swept": swept,
            "jobs": rows, "best": done[0]["job"] if done else None, "runner_up": runner_up,
            "failed": failed, "missing": list(missing or []),
            "folds": fold_groups(rows, swept, field, mode)}


def versus(best: dict, second: dict, metric: str, sweep_dir: Path) -> dict:
    """The runner-up against the best job on the same validation samples (their predictions.csv), on the ranking
    metric: with val_loss, the mean difference of their per-sample losses (predictions.compare_loss: a paired BCa
    bootstrap, Student's t past 2000 samples), and their validation error's comparison under "error"; otherwise the
    validation error's (predictions.compare: Newcombe's paired interval, or the RMSE's paired bootstrap), the only
    per-sample record (train_loss and train_error have none). At the jobs' interval level (1 - report.alpha), 95%
    when the two differ. `level` and `metric` say which."""
    from dlrun.report.predictions import compare, compare_loss, read_val

    levels = {best["interval_level"], second["interval_level"]}
    level = levels.pop() if len(levels) == 1 else 0.95
    before, after = read_val(sweep_dir / best["job"]), read_val(sweep_dir / second["job"])
    error = {"metric": "val_error", **compare(best["task"], before, after, confidence=level)}
    head = {"job": second["job"], "against": best["job"], "level": level}
    if metric == "val_loss":
        return {**head, "metric": "val_loss", **compare_loss(before, after, confidence=level), "error": error}
    return {**head, **error}


def fold_groups(rows: list[dict], swept: list[str], ranked_field: str, mode: str) -> Optional[list[dict]]:
    """k-fold sweeps (split.fold swept): mean and sample standard deviation across folds of each other setting, of
    the ranking metric (ranked_*: the rows' field ranked_field, ranked in mode "min" or "max", as _ranking gives
    them), the validation and the test error; best first."""
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
        for name, field in (("ranked", ranked_field), ("val_error", "val_error"), ("test_error", "test_error")):
            values = np.array([m[field] for m in members if m[field] is not None], dtype=float)
            entry[f"{name}_mean"] = float(values.mean()) if len(values) else None
            entry[f"{name}_std"] = float(values.std(ddof=1)) if len(values) > 1 else None
        out.append(entry)
    sign = -1.0 if mode == "max" else 1.0
    out.sort(key=lambda g: (g["ranked_mean"] is None, sign * (g["ranked_mean"] or 0.0)))
    return out


# ----------------------------------------------------------------------------------------------------------------------
# files


def fmt(value: Any, digits: int = 4) -> str:
    """A value with `digits` decimals; one too small for them in scientific notation (a loss of 2.7e-05 is not
    0.0000); n/a for None."""
    if value is None:
        return "n/a"
    if not isinstance(value, float) or math.isnan(value):
        return str(value)
    if value and abs(value) < 0.5 * 10 ** -digits:
        return f"{value:.2e}"
    return f"{value:.{digits}f}"


def with_interval(value: Any, interval: Any) -> str:
    """0.0250 [0.0129, 0.0467]: a value with its interval (report.json's error_interval, loss_interval), when it has
    one."""
    if not interval or None in interval:
        return fmt(value)
    return f"{fmt(value)} [{fmt(float(interval[0]))}, {fmt(float(interval[1]))}]"


METRIC_WORDS = {"val_loss": "validation loss", "val_error": "validation error"}


def ranked_cell(row: dict, summary: dict) -> str:
    """A job's ranking metric as the table shows it: '0.0965 [0.0461, 0.1963]', the bare value when report.json has
    no interval, '0.0900 (in training)' when it is not the evaluated weights' value (evaluated_note says theirs)."""
    value, interval = ranked(row, summary)
    in_training = row.get("objective_evaluated") and _ranked_field(summary["jobs"]) == "objective"
    return with_interval(value, interval) + (" (in training)" if in_training else "")


def interval_caption(summary: dict) -> str:
    """'Errors and val_loss with their 95% intervals.', or why the ranking metric has none."""
    metric, level = summary["rank_by"]["metric"], interval_words(summary)
    if metric == "val_error":
        return f"Errors with their {level} intervals."
    if any(ranked(r, summary)[1] for r in summary["jobs"]):
        return f"Errors and {metric} with their {level} intervals."
    if any(r.get("objective_evaluated") for r in summary["jobs"]):
        return f"Errors with their {level} intervals."  # evaluated_note says why the ranked values have none
    if metric in EVALUATED:
        return (f"Errors with their {level} intervals ({metric} without: its reports were written before the loss "
                "had one).")
    return (f"Errors with their {level} intervals; {metric}, a mean over each epoch's training batches recorded "
            "while training, has none.")


def evaluated_note(summary: dict) -> str:
    """The jobs whose ranked value (what a sweeper got) is not that of the weights they were evaluated
    with, and those weights' value with its interval; '' when there are none."""
    metric = summary["rank_by"]["metric"]
    if _ranked_field(summary["jobs"]) != "objective":
        return ""
    evaluated = {r["job"]: r["objective_evaluated"] for r in summary["jobs"] if r.get("objective_evaluated")}
    if not evaluated:
        return ""
    theirs = ", ".join(f"job {job}'s have {with_interval(e['value'], e['interval'])}" for job, e in evaluated.items())
    return (f"{metric} (in training): the value that ranks the job (what a sweeper got) is not that of the weights "
            "it ended on, which were evaluated (a diverged run, ranked worst; or a report from an older dlrun, which "
            f"ranked the best value recorded in training): {theirs}.")


def runner_up_sentence(summary: dict) -> str:
    """The runner-up against the best job on the same validation samples, on the ranking metric (versus): whether
    the sweep can tell the two apart at all. '' with fewer than two jobs."""
    from dlrun.report.predictions import difference_text, verdict_text

    vs = summary.get("runner_up")
    if not vs:
        return ""
    rank, compared = summary["rank_by"]["metric"], vs.get("metric", "val_error")
    words = METRIC_WORDS[compared]
    evaluated = any(r.get("objective_evaluated") for r in summary["jobs"] if r["job"] in (vs["job"], vs["against"]))
    head = f"Job {vs['job']} (second) against job {vs['against']} (best), {words}"
    if compared != rank:
        head += f" ({rank}, the ranking metric, has no per-sample values to compare)"
    elif evaluated:
        head += " of the weights evaluated (not the values recorded in training that rank them)"
    task = summary["jobs"][0].get("task")
    if "note" in vs:
        text = f"{head}: {vs['note']}; compare their intervals."
    else:
        if vs["confirmed"] == "higher":
            meaning = f"the best job's lower {words} is confirmed"
        elif vs["confirmed"] == "lower":
            meaning = f"the second job's {words} is lower, confirmed (the ranking is by {rank})"
        else:
            meaning = f"the sweep cannot tell these two apart on {words}"
        what = "mean per-sample difference " if compared == "val_loss" else ""
        text = (f"{head} on the same {vs['n']} samples: {what}{difference_text(vs, task)} "
                f"({100 * vs.get('level', 0.95):.3g}% interval), {verdict_text(vs)}: {meaning}.")
    error = vs.get("error")
    if error and "note" not in error:
        text += f" On validation error: {difference_text(error, task)}, {verdict_text(error)}."
    return text


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
             f"{tally(summary)}; ranked by {rank['metric']} ({rank['mode']}), best first"
             + (" (an interrupted job last: its figures describe a partial training)."
                if any(r["status"] != "done" for r in summary["jobs"]) else "."), "",
             f"| job | overrides | {rank['metric']} | train error | val error | test error | best epoch | stop | "
             "underfitting | overfitting | shift |",
             "|---|---|---:|---:|---:|---:|---:|---|---|---|---|"]
    for r in summary["jobs"]:
        v = r["verdicts"]
        errors = " | ".join(with_interval(r[f"{split}_error"], r.get(f"{split}_interval"))
                            for split in ("train", "val", "test"))
        lines.append(f"| {r['job']} | `{command(r['overrides'])}` | {ranked_cell(r, summary)} | {errors} | "
                     f"{r['best_epoch']} | {r['stop_reason']} | "
                     f"{v.get('underfitting')} | {v.get('overfitting')} | {v.get('distribution_shift')} |")
    if summary["best"] is not None:
        text = " ".join(t for t in (interval_caption(summary), evaluated_note(summary), runner_up_sentence(summary))
                        if t)
        lines += ["", text, "", "The best job alone:", "", "```bash", summary["jobs"][0]["command"], "```"]
    if summary["folds"]:
        lines += ["", "## Cross-validation: mean and standard deviation across folds", "",
                  "| setting | folds | " + rank["metric"] + " | val error | test error |", "|---|---:|---:|---:|---:|"]
        for g in summary["folds"]:
            cells = [f"{fmt(g[f + '_mean'])} ± {fmt(g[f + '_std'])}" for f in ("ranked", "val_error", "test_error")]
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
    """One row per job (done and failed), one column per swept parameter; the ranking metric and each error with
    its interval's bounds (`val_loss_low`, `val_loss_high`, `val_error_low`, ...; empty without one)."""
    swept = summary["swept"]
    metric = summary["rank_by"]["metric"]
    errors = [f"{split}_error{part}" for split in ("train", "val", "test") for part in ("", "_low", "_high")]
    ranking = [metric, f"{metric}_low", f"{metric}_high"] if metric != "val_error" else []
    fields = ["job", "status", *swept, *ranking, *errors,
              "best_epoch", "stop_reason", *FINDINGS, "exit_status", "error", "overrides"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    for r in summary["jobs"]:
        bounds = {f"{split}_error_{side}": bound for split in ("train", "val", "test")
                  for side, bound in zip(("low", "high"), r.get(f"{split}_interval") or ("", ""))}
        value, interval = ranked(r, summary)
        ranking = {metric: value, **dict(zip((f"{metric}_low", f"{metric}_high"), interval or ("", "")))}
        writer.writerow({**{k: r["params"].get(k, "") for k in swept}, **r, **r["verdicts"], **bounds,
                         **(ranking if metric != "val_error" else {}), "overrides": command(r["overrides"])})
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

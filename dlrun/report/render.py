"""Render a diagnosis into the run folder: report.json (the versioned contract), report.md and report.html.

The two pages open with three sentences (the verdicts, Ng's focus, the first command to run), then the evidence in
percentages with intervals; the raw test statistics are folded away at the end.

report.json is the one file other steps read (the sweep summary reads it from every job folder), so its
fields are versioned by SCHEMA_VERSION and documented in the README. Non-finite numbers are written as null.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any, Optional

import numpy as np

from dlrun.report.baselines import IN_MEMORY

SCHEMA_VERSION = 3  # 3: decomposition in the error's units, with intervals, the avoidable bias's range, focus may be null
# 2: data_mismatch finding, decomposition.focus, gaps with intervals, test levels


def clean(value: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None, tuples to lists."""
    if isinstance(value, dict):
        return {str(k): clean(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [clean(v) for v in value]
    if isinstance(value, np.ndarray):
        return clean(value.tolist())
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, np.bool_):
        return bool(value)
    return value


def _metrics(evaluation: Any, intervals: dict, loss_intervals: dict) -> dict:
    out = {}
    for name, s in evaluation.splits.items():
        out[name] = {"loss": s.loss, "loss_interval": loss_intervals.get(name), "error": s.error, "n": s.n,
                     "error_interval": intervals[name]}
        if evaluation.task == "regression" and s.n > 1 and np.isfinite(s.y_pred).all():
            from sklearn.metrics import mean_absolute_error, r2_score

            out[name].update(rmse=s.error, mae=mean_absolute_error(s.y_true, s.y_pred),
                             r2=r2_score(s.y_true, s.y_pred))
    return out


def build_report(run_info: dict, evaluation: Any, diagnosis: Any, baselines: dict) -> dict:
    """The report.json content (before cleaning)."""
    per_class = diagnosis.per_class
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run_info,
        "metrics": _metrics(evaluation, diagnosis.intervals, getattr(diagnosis, "loss_intervals", {})),
        "baselines": {**{k: v for k, v in baselines.items() if k not in IN_MEMORY},
                      "intervals": getattr(diagnosis, "baseline_intervals", {})},
        "decomposition": diagnosis.decomposition,
        "diagnosis": {name: asdict(f) for name, f in diagnosis.findings().items()},
        "notes": diagnosis.notes,
        "health": getattr(diagnosis, "health", []),  # training-health findings (report/health.py)
        "evidence": {"shift_tests": diagnosis.shift_tests, "curves": diagnosis.curves,
                     "per_class": per_class, "versus_linear": getattr(diagnosis, "versus_linear", None),
                     "still_improving": getattr(diagnosis, "still_improving", None),
                     "signal_unconfirmed": getattr(diagnosis, "signal_unconfirmed", None)},
    }


def render(run_dir: Path, run_info: dict, history: Any, evaluation: Any, diagnosis: Any, splits: Any,
           report_cfg: Any, baselines: dict | None = None) -> dict:
    """Write report.json, report.md, the plots and report.html into run_dir; return the report dict.

    In a sweep on the basic launcher (report/background.py) the plots and report.html are drawn in a helper process
    while the next job trains; report.json and report.md, which the summary and scripts read, are written here."""
    from dlrun.engine.checkpoint import atomic_write_text
    from dlrun.report import background, predictions

    run_dir = Path(run_dir)
    baselines = baselines or {}
    report = clean(build_report(run_info, evaluation, diagnosis, baselines))
    # what the verdicts were judged at (report.alpha, report.tolerance; regression: also in the target's units)
    from dlrun.report.diagnosis import tolerance_in_units

    report["judged"] = {"alpha": report_cfg.alpha, "tolerance": report_cfg.tolerance,
                        "tolerance_in_units": tolerance_in_units(report_cfg.tolerance, evaluation.task,
                                                                 float(baselines.get("target_scale", 1.0)))}
    report["files"] = {"json": str(run_dir / "report.json"), "markdown": str(run_dir / "report.md"),
                       "metrics": str(run_dir / "metrics.csv"), "checkpoints": str(run_dir / "checkpoints")}
    report["files"]["html"] = str(run_dir / "report.html")
    jobs = plot_jobs(run_dir / "plots", history, evaluation, diagnosis, list(getattr(splits, "class_names", []))) \
        if report_cfg.plots else []
    report["files"]["plots"] = {name: str(path) for name, _, _, path in jobs}
    report["files"]["predictions"] = str(run_dir / "predictions.csv")
    atomic_write_text(run_dir / "predictions.csv", predictions.to_csv(evaluation, splits))
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    background.submit(draw_and_write_html, jobs, report, path=run_dir / "report.html")
    return report


def draw_and_write_html(jobs: list[tuple], report: dict, path: Path) -> Path:
    """Draw every plot job, then write report.html with them embedded (here or in report/background.py's helper)."""
    from dlrun.engine.checkpoint import atomic_write_text

    plots = {name: draw(*args, out) for name, draw, args, out in jobs}
    atomic_write_text(Path(path), render_html(report, plots))
    return Path(path)


def plot_jobs(folder: Path, history: Any, evaluation: Any, diagnosis: Any,
              class_names: list[str]) -> list[tuple[str, Any, tuple, Path]]:
    """The report's PNGs as (name, plots function, its arrays, output path), so that they can be drawn here or in
    another process: learning curves, confusion matrix, per-class errors, confidences, training health, PCA."""
    from dlrun.report import plots
    from dlrun.report.evidence import finite_rows

    jobs: list[tuple[str, Any, tuple, Path]] = []

    def add(name: str, draw: Any, *args: Any) -> None:
        jobs.append((name, draw, args, folder / f"{name}.png"))

    if history.rows:
        columns = {k: history.column(k) for k in ("epoch", "train_loss", "val_loss", "train_error", "val_error")}
        add("learning_curves", plots.learning_curves, columns, history.best_epoch, history.epochs_run)
    val, test = evaluation.splits["val"], evaluation.splits["test"]
    if evaluation.task == "classification":
        add("confusion_matrix", plots.confusion_matrix, test.y_true, test.y_pred, class_names)
        if diagnosis.per_class is not None:
            add("per_class_error", plots.per_class_error, diagnosis.per_class["val_error"],
                diagnosis.per_class["test_error"], class_names)
        if np.isfinite(val.probs).all() and np.isfinite(test.probs).all():
            add("confidence", plots.confidence_histograms, val.probs.max(axis=1), test.probs.max(axis=1))
    else:
        add("residuals", plots.regression_residuals, test.y_true, test.y_pred)
    if getattr(history, "dynamics", None):
        add("training_health", plots.training_health, history.dynamics)
    features = {name: finite_rows(s.features) for name, s in evaluation.splits.items()}
    features = {name: f for name, f in features.items() if f is not None}
    if features:
        add("feature_pca", plots.feature_pca, features)
    return jobs


PLOT_TITLES = {"learning_curves": "Learning curves", "confusion_matrix": "Confusion matrix (test)",
               "per_class_error": "Per-class error, validation vs test", "confidence": "Confidence (max softmax)",
               "residuals": "Residuals (test)", "feature_pca": "Penultimate features, PCA by split",
               "training_health": "Training health: gradient norms, dead or saturated units"}
# figures wider than tall, with a row of labels to read: each on a row of its own (the learning curves at the top),
# the others share a grid two to a row
WIDE_PLOTS = ("learning_curves", "residuals", "per_class_error", "training_health")
# CSS px of report.html's column: the 10-inch figures (1000 px at plots.DPI) show at 1:1, their text at its size
PAGE_WIDTH = 1000


def render_html(report: dict, plots: dict[str, Path]) -> str:
    """A self-contained page: the images are embedded as base64, so it opens offline from anywhere."""
    import base64

    images = [{"name": name, "title": PLOT_TITLES.get(name, name), "wide": name in WIDE_PLOTS,
               "data": base64.b64encode(Path(path).read_bytes()).decode("ascii")} for name, path in plots.items()]
    curves = [image for image in images if image["name"] == "learning_curves"]
    health_images = [image for image in images if image["name"] == "training_health"]  # in its own section
    images = sorted((i for i in images if i not in curves + health_images), key=lambda i: not i["wide"])
    return _template("report.html.j2").render(curves=curves, images=images, health_images=health_images,
                                              page_width=PAGE_WIDTH, **_context(report))


def render_markdown(report: dict) -> str:
    import re

    text = _template("report.md.j2").render(**_context(report))
    return re.sub(r"\n{3,}", "\n\n", text)  # the template's optional blocks leave runs of blank lines


def _template(name: str):
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("dlrun.report", "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=name.endswith(".html.j2"))
    return env.get_template(name)


# ----------------------------------------------------------------------------------------------------------------------
# what report.md and report.html say: numbers formatted here (errors in percent with their intervals for
# classification, RMSE for regression); the findings' own sentences come from diagnosis.py as they are


def _value(x: Any, percent: bool) -> str:
    """26.1% (percent) or 0.2613; n/a for a number report.json holds as null (missing or not finite)."""
    if x is None:
        return "n/a"
    return f"{100 * x:.1f}%" if percent else f"{x:.4g}"


def _interval(pair: Any, percent: bool) -> str:
    """[21.8, 30.9]: the bounds in the value's unit (percentage points); empty when a bound is missing."""
    from dlrun.report.diagnosis import interval_text

    return interval_text(pair, percent)


def _with_interval(x: Any, pair: Any, percent: bool) -> str:
    return f"{_value(x, percent)} {_interval(pair, percent)}".rstrip()


def _label(name: str) -> str:
    return name.replace("train_dev", "train-dev").replace("_", " ")


SPLIT_WORDS = {"train": "training", "train_dev": "train-dev", "val": "validation", "test": "test"}
# the two splits each finding compares, (worse, reference); overfitting reads its held-out split from its stats
COMPARED = {"data_mismatch": ("val", "train_dev"), "distribution_shift": ("test", "val")}


def _headline(name: str, finding: dict, metrics: dict, percent: bool) -> str:
    """A finding's numbers in one sentence: the two error levels it compares, each with its interval (the gap and
    the bound the verdict tests are the diagnosis's first line of evidence)."""
    stats = finding.get("stats") or {}
    unit = "error" if percent else "RMSE"
    if name == "underfitting" and stats.get("no_signal") and "val" in metrics:  # judged on held-out data vs chance
        val = metrics["val"]
        text = (f"validation {unit} {_with_interval(val['error'], val.get('error_interval'), percent)} vs chance "
                f"{_with_interval(stats.get('chance_error'), stats.get('chance_error_interval'), percent)} and a "
                "linear model's "
                f"{_with_interval(stats.get('simple_val_error'), stats.get('simple_val_error_interval'), percent)}")
    elif name == "underfitting" and "reference" in stats:
        train = metrics["train"]
        text = (f"training {unit} {_with_interval(train['error'], train.get('error_interval'), percent)} vs "
                f"{stats['reference_name']} "
                f"{_with_interval(stats['reference'], stats.get('reference_interval'), percent)}")
    elif name in COMPARED or name == "overfitting":
        worse, reference = COMPARED.get(name) or (stats.get("held_out", "val"), "train")
        if worse not in metrics or reference not in metrics:
            return ""
        text = " vs ".join(f"{SPLIT_WORDS.get(split, split)} {unit} "
                           f"{_with_interval(metrics[split]['error'], metrics[split].get('error_interval'), percent)}"
                           for split in (worse, reference))
    else:
        return ""
    return text[0].upper() + text[1:]


def _evidence(finding: dict, shift_tests: dict) -> tuple[list[str], list[str]]:
    """The diagnosis's evidence as (sentences to read, lines quoting a test statistic). The statistics go behind
    <details> with the test table; one sentence names the tests that fired in their place."""
    quoting = tuple(f"{t['what']}: p = " for t in shift_tests.values())  # how diagnosis.py cites a test
    readable, raw = [], []
    for line in finding.get("evidence", []):
        (raw if quoting and line.startswith(quoting) else readable).append(line)
    fired = [t for t in shift_tests.values() if t.get("fires")]
    if raw and fired:
        names = ", ".join(t["what"].split(" (")[0] for t in fired)
        readable.insert(min(1, len(readable)), f"{len(fired)} of {len(shift_tests)} label-free tests find that the "
                                               f"test inputs differ from the validation inputs: {names} (test "
                                               "statistics below)")
    return readable, raw


def _verdict_sentence(findings: dict) -> str:
    fired = [f"{_label(name)} ({f['severity']})" for name, f in findings.items() if f["detected"]]
    quiet = [_label(name) for name, f in findings.items() if not f["detected"]]
    if not fired:
        return f"No finding fired: no {_joined(quiet, 'or')} was confirmed."
    sentence = f"{_joined(fired, 'and')} fired"
    if quiet:
        sentence += f"; {_joined(quiet, 'and')} did not"
    return sentence[0].upper() + sentence[1:] + "."


def _joined(words: list[str], last: str) -> str:
    return words[0] if len(words) == 1 else f"{', '.join(words[:-1])} {last} {words[-1]}"


def _focus_sentence(decomposition: dict, percent: bool, fired: set[str] = frozenset(),
                    detected: Optional[set[str]] = None) -> str:
    """Ng's focus: the largest of avoidable bias, variance and data mismatch, what to work on first; or why the
    decomposition names none. When no signal is confirmed either way (a note), that comes first."""
    sentence = _focus_words(decomposition, percent, fired, fired if detected is None else detected)
    if decomposition.get("signal_unconfirmed"):
        sentence += (" Before that: neither the network nor a linear model is confirmed to beat chance (see the "
                     "notes): check the data first.")
    return sentence


def _focus_words(decomposition: dict, percent: bool, fired: set[str], detected: set[str]) -> str:
    """`fired`: the findings that fired with next runs (the focus then points at them); `detected`: all that fired."""
    from dlrun.report.diagnosis import FOCUS_FINDING, focus_advice, range_ends

    focus = decomposition.get("focus")
    intervals = decomposition.get("intervals") or {}
    bias_range = decomposition.get("avoidable_bias_range")
    if decomposition.get("no_signal"):
        return ("Ng's decomposition names no focus: no usable relation between the inputs and the outputs shows in "
                "these data (the underfitting finding), and its terms assume something to learn: check the data "
                "first.")
    if not focus and decomposition.get("focus_undetermined") and bias_range:
        others = [t for t in ("variance", "data_mismatch") if decomposition.get(t) is not None]
        largest = max(others, key=lambda t: decomposition[t]) if others else None
        other = "" if largest is None else \
            f", the {_label(largest)} is {_with_interval(decomposition[largest], intervals.get(largest), percent)}"
        low, high = range_ends(decomposition, percent)
        return (f"Ng's decomposition names no focus yet: the avoidable bias lies between {low} and {high} (the best "
                f"achievable error is unknown: between 0 and what a linear model reaches){other}; set "
                "report.target_error to your estimate of the best achievable error.")
    if not focus:
        return ("Ng's decomposition names no focus: no term is confirmed above 0, nothing these splits can show to "
                "work on.")
    if focus == "avoidable_bias" and decomposition.get("avoidable_bias") is None and bias_range:
        size = f"at least {range_ends(decomposition, percent)[0]}"
    else:
        size = _with_interval(decomposition.get(focus), intervals.get(focus), percent)
    shift = ("; the gap from validation to test is the distribution-shift finding's (see its next runs)"
             if "distribution_shift" in fired else "")
    advice = decomposition.get("focus_advice") or focus_advice(focus, fired)
    finding = FOCUS_FINDING.get(focus)
    terms = "Ng's error terms" + (" confirmed above 0" if decomposition.get("focus_confirmed_only") else "")
    if finding is not None and finding in detected and finding not in fired and "underfitting" in fired:
        return (f"Largest of {terms}: {_label(focus)} ({size}); the {_label(finding)} finding's next runs "
                f"wait until the training error is fixed: first, the underfitting finding's next runs{shift}.")
    if finding is not None and finding not in detected:  # not confirmed beyond the tolerance: advice only
        return (f"Largest of {terms}: {_label(focus)} ({size}), not confirmed beyond the tolerance (the "
                f"{_label(finding)} finding did not fire); to lower it, work on it first: {advice}{shift}.")
    return f"Work first on {_label(focus)} ({size}, the largest of {terms}): {advice}{shift}."


def first_action(report: dict) -> dict | None:
    """The command to run first ({lead, text, command}): an interrupted run's resume command (its verdicts judge a
    partial training); the first action of the first finding that fired with one; else the first command a note
    suggests."""
    from dlrun.report.diagnosis import note_actions

    run = report["run"]
    if run.get("stop_reason") == "interrupted" and run.get("resume_command"):
        return {"lead": f"The run was interrupted at epoch {run['epochs_run']} of {run['max_epochs']}",
                "text": "resume it (the verdicts below judge a partial training)", "command": run["resume_command"]}

    fired = next(((name, f["actions"][0]) for name, f in report["diagnosis"].items() if f["detected"] and f["actions"]),
                 None)
    if fired is not None:
        return {"lead": f"For the {_label(fired[0])}", **fired[1]}
    noted = note_actions(report)
    return {"lead": "No finding fired; a note suggests", **noted[0][1]} if noted else None


def _context(report: dict) -> dict:
    percent = report["run"]["task"] == "classification"
    findings, metrics = report["diagnosis"], report["metrics"]
    shift_tests = report.get("evidence", {}).get("shift_tests") or {}
    decomposition = report["decomposition"]
    fired, raw_statistics = [], []
    for name, f in findings.items():
        if f["detected"]:
            readable, raw = _evidence(f, shift_tests)
            raw_statistics += raw
            fired.append({"name": _label(name), "severity": f["severity"], "actions": f["actions"],
                          "headline": _headline(name, f, metrics, percent), "evidence": readable})
    first = first_action(report)
    notes = report.get("notes", [])
    focus_notes = [n for n in notes if n.startswith("focus:")]  # the decomposition's own words: beside its table
    return {
        "run": report["run"], "schema_version": report["schema_version"],
        "command": " ".join([report["run"].get("launch", "dlrun")] + [shlex.quote(o) for o in report["run"]["overrides"]]),
        "unit": "error" if percent else "RMSE",
        "glance": {"verdict": _verdict_sentence(findings), "focus": _focus_sentence(decomposition, percent,
                                                            {name for name, f in findings.items()
                                                             if f["detected"] and f["actions"]},
                                                            {name for name, f in findings.items() if f["detected"]}),
                   "first": first},
        "fired": fired, "quiet": [_label(name) for name, f in findings.items() if not f["detected"]],
        "notes": [n for n in notes if n not in focus_notes], "focus_notes": focus_notes,
        "decomposition": _decomposition_rows(decomposition, percent),
        "splits": [{"name": name, "n": m["n"], "loss": _value(m["loss"], False),
                    "loss_interval": _interval(m.get("loss_interval"), False), "error": _value(m["error"], percent),
                    "interval": _interval(m.get("error_interval"), percent)} for name, m in metrics.items()],
        "intervals_note": _intervals_note(percent),
        "judged": _judged_sentence(report.get("judged"), percent),
        "baselines": _baselines_sentence(report.get("baselines") or {}, percent),
        "shift_tests": [{"what": t["what"], "p_value": _value(t["p_value"], False), "level": _value(t["level"], False),
                         "statistic": _value(t["statistic"], False), "fires": "yes" if t["fires"] else "no",
                         "detail": t["detail"]} for t in shift_tests.values()],
        "raw_statistics": raw_statistics,
        "health": report.get("health", []),
        "health_note": _health_note(report),
    }


def _health_note(report: dict) -> str:
    """The health findings' weight in this run: without an underfitting verdict they limit nothing yet."""
    underfitting = report["diagnosis"].get("underfitting", {})
    if report.get("health") and (underfitting.get("stats") or {}).get("untrained"):
        return ("The run did not train at all (learning rate too big): these symptoms follow from it, so each command "
                "here also lowers the learning rate.")
    if not report.get("health") or underfitting.get("detected") or report["run"].get("stop_reason") == "diverged":
        return ""
    if ((report.get("evidence") or {}).get("versus_linear") or {}).get("fires"):
        return ("No underfitting verdict, but a linear model does better on the same validation samples (see the "
                "notes): these symptoms may be part of why; they are the first causes to look at.")
    return ("No underfitting verdict (the training error is not confirmed above its reference): these symptoms limit "
            "nothing measurable in this run; they are the first causes to look at if it underfits.")


def _decomposition_rows(decomposition: dict, percent: bool) -> list[dict]:
    """The levels and terms that exist for this run (no train-dev split: no train-dev row), each with its (1 - alpha)
    interval, the focus marked. Without report.target_error the avoidable bias is two rows: its lower estimate
    (against what a linear model reaches) and its upper one (against 0)."""
    intervals = decomposition.get("intervals") or {}
    focus = decomposition.get("focus")
    rows = []

    def add(label, value, interval=None, marked=False):
        rows.append({"label": label, "value": _value(value, percent), "interval": _interval(interval, percent),
                     "focus": marked})

    for key, value in decomposition.items():
        if key == "target_error":
            if value is None:
                rows.append({"label": "target error", "value": "not set (report.target_error)", "interval": "",
                             "focus": False})
            else:
                rows.append({"label": "target error", "value": _value(value, percent), "interval": "yours: exact",
                             "focus": False})
        elif key == "avoidable_bias_range" and value is not None:
            achievable = decomposition.get("achievable")
            if achievable:
                name = decomposition.get("achievable_name") or "a linear model's error"
                add(f"avoidable bias, lower estimate: train error minus {name} "
                    f"{_with_interval(achievable, decomposition.get('achievable_interval'), percent)}",
                    decomposition["train_error"] - achievable, intervals.get("avoidable_bias"), focus == "avoidable_bias")
            add("avoidable bias, upper estimate: against an optimal error of 0", value[1], intervals.get("train_error"),
                focus == "avoidable_bias" and not achievable)
        elif key in ("train_error", "train_dev_error", "val_error", "test_error", "avoidable_bias", "variance",
                     "data_mismatch", "val_to_test") and value is not None:
            add(_label(key), value, intervals.get(key), key == focus)
    return rows


def _judged_sentence(judged: dict | None, percent: bool) -> str:
    """'Verdicts at 95% confidence (report.alpha=0.05) against a tolerance of 5.0 points of error
    (report.tolerance=0.05).' ('' for a report.json written before report.judged)."""
    if not judged:
        return ""
    alpha, tol = judged["alpha"], judged["tolerance"]
    size = (f"{100 * tol:.1f} points of error" if percent else
            f"{judged['tolerance_in_units']:.4g} of RMSE, {tol:g} of the training targets' std")
    return (f"Verdicts at {100 * (1 - alpha):g}% confidence (report.alpha={alpha:g}) against a tolerance of {size} "
            f"(report.tolerance={tol:g}).")


def _intervals_note(percent: bool) -> str:
    """How the split table's intervals are computed."""
    from dlrun.report.stats import BCA_MAX_SAMPLES

    mean = f"a BCa bootstrap (Student's t past {BCA_MAX_SAMPLES} samples)"
    error = ("the error by Wilson's score interval" if percent else
             "the RMSE as the square root of the mean squared error's interval")
    return f"Intervals at 1 - report.alpha: {error}; each mean (loss, squared error) by {mean}."


def _baselines_sentence(baselines: dict, percent: bool) -> str:
    """The baselines' errors, each with its interval (report.json baselines.intervals)."""
    parts = []
    intervals = baselines.get("intervals") or {}
    if baselines.get("chance_error") is not None:
        parts.append("chance (always the training majority class, or the training mean) "
                     + _with_interval(baselines["chance_error"], intervals.get("chance_error"), percent)
                     + " on validation")
    linear = [f"{_with_interval(baselines[key], intervals.get(key), percent)} on {where}" for key, where in
              (("simple_train_error", "the training data"), ("simple_train_dev_error", "train-dev"),
               ("simple_val_error", "validation"))
              if baselines.get(key) is not None]
    if linear:
        parts.append("a linear model " + ", ".join(linear))
    return "Baselines: " + "; ".join(parts) + "." if parts else ""

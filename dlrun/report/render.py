"""Render a diagnosis into the run folder: report.json (the versioned contract) and report.md.

report.json is the one file other steps read (the sweep summary reads it from every job folder), so its
fields are versioned by SCHEMA_VERSION and documented in the README. Non-finite numbers are written as null.
"""

from __future__ import annotations

import json
import math
import shlex
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

SCHEMA_VERSION = 2  # 2: data_mismatch finding, decomposition.focus, gaps with intervals, test levels


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


def _metrics(evaluation: Any, intervals: dict) -> dict:
    out = {}
    for name, s in evaluation.splits.items():
        out[name] = {"loss": s.loss, "error": s.error, "n": s.n, "error_interval": intervals[name]}
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
        "metrics": _metrics(evaluation, diagnosis.intervals),
        "baselines": {k: v for k, v in baselines.items() if k != "target_scale"},
        "decomposition": diagnosis.decomposition,
        "diagnosis": {name: asdict(f) for name, f in diagnosis.findings().items()},
        "notes": diagnosis.notes,
        "evidence": {"shift_tests": diagnosis.shift_tests, "curves": diagnosis.curves,
                     "per_class": per_class},
    }


def render(run_dir: Path, run_info: dict, history: Any, evaluation: Any, diagnosis: Any, splits: Any,
           report_cfg: Any, baselines: dict | None = None) -> dict:
    """Write report.json and report.md into run_dir; return the report dict."""
    from dlrun.engine.checkpoint import atomic_write_text
    run_dir = Path(run_dir)
    baselines = baselines or {}
    report = clean(build_report(run_info, evaluation, diagnosis, baselines))
    report["files"] = {"json": str(run_dir / "report.json"), "markdown": str(run_dir / "report.md"),
                       "metrics": str(run_dir / "metrics.csv"), "checkpoints": str(run_dir / "checkpoints")}
    report["files"]["html"] = str(run_dir / "report.html")
    plots = draw_plots(run_dir / "plots", history, evaluation, diagnosis, list(getattr(splits, "class_names", [])),
                       run_info) if report_cfg.plots else {}
    report["files"]["plots"] = {name: str(path) for name, path in plots.items()}
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    atomic_write_text(run_dir / "report.html", render_html(report, plots))
    return report


def draw_plots(folder: Path, history: Any, evaluation: Any, diagnosis: Any, class_names: list[str],
               run_info: dict) -> dict[str, Path]:
    """The report's PNGs: learning curves, confusion matrix, per-class errors, confidences, feature PCA."""
    from dlrun.report import plots

    out: dict[str, Path] = {}
    if history.rows:
        columns = {k: history.column(k) for k in ("epoch", "train_loss", "val_loss", "train_error", "val_error")}
        out["learning_curves"] = plots.learning_curves(columns, history.best_epoch, history.epochs_run,
                                                       folder / "learning_curves.png")
    val, test = evaluation.splits["val"], evaluation.splits["test"]
    if evaluation.task == "classification":
        out["confusion_matrix"] = plots.confusion_matrix(test.y_true, test.y_pred, class_names,
                                                         folder / "confusion_matrix.png")
        if diagnosis.per_class is not None:
            out["per_class_error"] = plots.per_class_error(diagnosis.per_class["val_error"],
                                                           diagnosis.per_class["test_error"], class_names,
                                                           folder / "per_class_error.png")
        if np.isfinite(val.probs).all() and np.isfinite(test.probs).all():
            out["confidence"] = plots.confidence_histograms(val.probs.max(axis=1), test.probs.max(axis=1),
                                                            folder / "confidence.png")
    else:
        out["residuals"] = plots.regression_residuals(test.y_true, test.y_pred, folder / "residuals.png")
    from dlrun.report.evidence import finite_rows

    features = {name: finite_rows(s.features) for name, s in evaluation.splits.items()}
    features = {name: f for name, f in features.items() if f is not None}
    if features:
        out["feature_pca"] = plots.feature_pca(features, folder / "feature_pca.png")
    return out


PLOT_TITLES = {"learning_curves": "Learning curves", "confusion_matrix": "Confusion matrix (test)",
               "per_class_error": "Per-class error, validation vs test", "confidence": "Confidence (max softmax)",
               "residuals": "Residuals (test)", "feature_pca": "Penultimate features, PCA by split"}


def render_html(report: dict, plots: dict[str, Path]) -> str:
    """A self-contained page: the images are embedded as base64, so it opens offline from anywhere."""
    import base64

    images = [(PLOT_TITLES.get(name, name), base64.b64encode(Path(path).read_bytes()).decode("ascii"))
              for name, path in plots.items()]
    return _template("report.html.j2").render(images=images, **_context(report))


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def _template(name: str):
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("dlrun.report", "templates"),
                             undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                             autoescape=name.endswith(".html.j2"))
    return env.get_template(name)


def _context(report: dict) -> dict:
    command = " ".join(["dlrun"] + [shlex.quote(o) for o in report["run"]["overrides"]])
    return {"run": report["run"], "command": command, "diagnosis": report["diagnosis"],
            "decomposition": report["decomposition"], "metrics": report["metrics"],
            "baselines": report.get("baselines"), "notes": report.get("notes", []),
            "shift_tests": report.get("evidence", {}).get("shift_tests", {}),
            "schema_version": report["schema_version"], "fmt": _fmt}


def render_markdown(report: dict) -> str:
    return _template("report.md.j2").render(**_context(report))

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

SCHEMA_VERSION = 1


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


def _metrics(evaluation: Any, diagnosis_figures: dict) -> dict:
    out = {}
    for name, s in evaluation.splits.items():
        fig = diagnosis_figures[name]
        out[name] = {"loss": s.loss, "error": s.error, "n": s.n, "error_interval": [fig.low, fig.high]}
    return out


def build_report(run_info: dict, evaluation: Any, diagnosis: Any, baselines: dict, figures: dict) -> dict:
    """The report.json content (before cleaning)."""
    return {
        "schema_version": SCHEMA_VERSION,
        "run": run_info,
        "metrics": _metrics(evaluation, figures),
        "baselines": {k: v for k, v in baselines.items() if k != "target_scale"},
        "decomposition": diagnosis.decomposition,
        "diagnosis": {name: asdict(f) for name, f in diagnosis.findings().items()},
        "notes": diagnosis.notes,
    }


def render(run_dir: Path, run_info: dict, history: Any, evaluation: Any, diagnosis: Any, splits: Any,
           report_cfg: Any, baselines: dict | None = None) -> dict:
    """Write report.json and report.md into run_dir; return the report dict."""
    from dlrun.engine.checkpoint import atomic_write_text
    from dlrun.report.diagnosis import _figures

    run_dir = Path(run_dir)
    baselines = baselines or {}
    figures = _figures(evaluation, float(getattr(splits, "target_scale", 1.0)))
    report = clean(build_report(run_info, evaluation, diagnosis, baselines, figures))
    report["files"] = {"json": str(run_dir / "report.json"), "markdown": str(run_dir / "report.md"),
                       "metrics": str(run_dir / "metrics.csv"), "checkpoints": str(run_dir / "checkpoints")}
    atomic_write_text(run_dir / "report.json", json.dumps(report, indent=2) + "\n")
    atomic_write_text(run_dir / "report.md", render_markdown(report))
    return report


def _fmt(value: Any) -> str:
    if value is None:
        return "n/a"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_markdown(report: dict) -> str:
    import jinja2

    env = jinja2.Environment(loader=jinja2.PackageLoader("dlrun.report", "templates"),
                             undefined=jinja2.StrictUndefined, trim_blocks=False, keep_trailing_newline=True)
    template = env.get_template("report.md.j2")
    command = " ".join(["dlrun"] + [shlex.quote(o) for o in report["run"]["overrides"]])
    return template.render(run=report["run"], command=command, diagnosis=report["diagnosis"],
                           decomposition=report["decomposition"], metrics=report["metrics"],
                           baselines=report.get("baselines"), notes=report.get("notes", []),
                           schema_version=report["schema_version"], fmt=_fmt)

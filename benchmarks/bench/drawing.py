"""The cost of drawing one report's figures, and the least any reuse of matplotlib figures could cost.

    .venv/bin/python -m benchmarks.bench drawing [--repeats 5] [--json PATH]

One default run (`dlrun hydra.run.dir=TMP/run`, in this process) gives the report's plot jobs (report/render.py's
`plot_jobs`: learning curves, confusion matrix, per-class error, confidence, training health, PCA). Then, with
every import and font cache warm, the median over repeats of the seconds for all of them, four ways:

- fresh: each plots function as the report calls it (a new figure, constrained layout, savefig to PNG);
- fresh, no layout engine: the same with the layout engine removed before savefig (labels may be clipped);
- reused: the figures already drawn once, saved again as they are, constrained layout included: the least a
  report could cost if every figure were built once per process and only its data changed (ticks, texts and
  layout are redone at each save, as they would have to be for new data);
- reused, no layout engine: the same without layout: matplotlib's floor for these six figures.

benchmarks/RESULTS.md ("The marginal cost of a sweep job") sets these against the sweep's budget per job.
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
from pathlib import Path
from unittest import mock

from .timing import GATE, spread, stopwatch

WAYS = ("fresh", "fresh, no layout engine", "reused", "reused, no layout engine")


def report_plot_jobs(run_dir: Path) -> list[tuple]:
    """Run the default job into run_dir (no plot helper: in this process) and return its plot jobs."""
    from dlrun import cli
    from dlrun.report import background

    captured = []

    def capture(draw, jobs, report, path):
        captured.append(jobs)
        return path  # drawn below, timed

    argv = ["dlrun", f"hydra.run.dir={run_dir}", "trainer.progress=false"]
    with mock.patch.object(background, "submit", capture), mock.patch.object(sys, "argv", argv):
        try:
            cli.main()
        except SystemExit as stop:
            if stop.code:
                raise
    return captured[0]


def draw_fresh(jobs: list[tuple], layout: bool) -> float:
    from dlrun.report import plots

    save = plots._save

    def save_without_layout(fig, path):
        fig.set_layout_engine("none")
        return save(fig, path)

    with mock.patch.object(plots, "_save", save if layout else save_without_layout):
        with stopwatch() as watch:
            for _, draw, args, out in jobs:
                getattr(plots, draw.__name__)(*args, out)  # the module's function, so that the patch applies
    return watch.seconds


def built_figures(jobs: list[tuple]) -> list:
    """The report's figures, drawn once and kept open."""
    from dlrun.report import plots

    figures = []

    def keep(fig, path):
        fig.savefig(io.BytesIO(), dpi=plots.DPI)
        figures.append(fig)
        return Path(path)

    with mock.patch.object(plots, "_save", keep):
        for _, draw, args, out in jobs:
            getattr(plots, draw.__name__)(*args, out)
    return figures


def save_again(figures: list, layout: bool) -> float:
    from dlrun.report import plots

    with stopwatch() as watch:
        for fig in figures:
            if not layout:
                fig.set_layout_engine("none")
            fig.savefig(io.BytesIO(), dpi=plots.DPI, format="png")
    return watch.seconds


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench drawing", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this JSON file")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    import matplotlib

    matplotlib.use("Agg")
    seconds: dict[str, list[float]] = {way: [] for way in WAYS}
    with tempfile.TemporaryDirectory(prefix="bench-drawing-") as tmp:
        jobs = report_plot_jobs(Path(tmp) / "run")
        print(f"figures of the default run's report: {', '.join(name for name, *_ in jobs)}")
        draw_fresh(jobs, layout=True)  # warm: imports, font cache
        for _ in range(args.repeats):
            seconds[WAYS[0]].append(draw_fresh(jobs, layout=True))
            seconds[WAYS[1]].append(draw_fresh(jobs, layout=False))
        figures = built_figures(jobs)
        for layout, way in ((True, WAYS[2]), (False, WAYS[3])):
            save_again(figures, layout)
            seconds[way] = [save_again(figures, layout) for _ in range(args.repeats)]
    summary = {way: spread(v) for way, v in seconds.items()}
    for way, s in summary.items():
        print(f"{way:26s} {s['median']:.3f} s per report [{s['min']:.3f}-{s['max']:.3f}]")
    summary["quiet_gate"] = GATE.summary()
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")

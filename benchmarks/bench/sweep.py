"""Sweep cost: what one more job adds to a basic-launcher sweep, against that job's own training time.

    .venv/bin/python -m benchmarks.bench sweep [--repeats 1] [--jobs 12] [--json PATH]

In a temporary folder, each repeat times two whole commands (wall clock, start-up included):

    dlrun -m trainer.seed=0,1 hydra.sweep.dir=TMP/a trainer.progress=false            # t2
    dlrun -m trainer.seed=0,1,...,11 hydra.sweep.dir=TMP/b trainer.progress=false     # t12 (--jobs 12)

marginal = (t12 - t2) / 10 is one job's cost inside a sweep (start-up cancels out); each job's report.json under
TMP/b/N/ gives its fit() seconds (run.wall_seconds). ratio = marginal / median fit is what a sweep job costs per
second of training: the goal is <= 1.2. A first 2-job sweep warms the page cache and is not timed. The `dlrun`
measured is the console script next to this Python (the same venv); the jobs inherit OMP_NUM_THREADS.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

from . import DLRUN
from .timing import GATE, run_command, spread, stopwatch

GOAL = 1.2  # marginal cost of a job / its fit() seconds


def sweep_command(jobs: int, sweep_dir: Path) -> list[str]:
    seeds = ",".join(str(s) for s in range(jobs))
    return [str(DLRUN), "-m", f"trainer.seed={seeds}", f"hydra.sweep.dir={sweep_dir}", "trainer.progress=false"]


def timed_sweep(jobs: int, sweep_dir: Path) -> float:
    """The whole `dlrun -m` command's wall clock, in seconds."""
    with stopwatch() as watch:
        run_command(sweep_command(jobs, sweep_dir), sweep_dir.parent, timeout=3600)
    return watch.seconds


def fit_seconds(sweep_dir: Path, jobs: int) -> list[float]:
    """Each job's fit() seconds, from TMP/b/N/report.json."""
    return [json.loads((sweep_dir / str(n) / "report.json").read_text())["run"]["wall_seconds"] for n in range(jobs)]


def one_repeat(jobs: int, order: int) -> dict:
    """t2 and t_jobs in a fresh temporary folder (a finished job folder would be skipped, not rerun); `order`
    alternates which command goes first, so drift over a repeat hits both alike."""
    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as tmp:
        a, b = Path(tmp) / "a", Path(tmp) / "b"
        walls = {}
        for n, sweep_dir in ((2, a), (jobs, b)) if order % 2 == 0 else ((jobs, b), (2, a)):
            walls[n] = timed_sweep(n, sweep_dir)
        fits = fit_seconds(b, jobs)
    marginal = (walls[jobs] - walls[2]) / (jobs - 2)
    median_fit = statistics.median(fits)
    return {"t2": walls[2], f"t{jobs}": walls[jobs], "marginal": marginal, "fit_seconds": fits,
            "median_fit": median_fit, "ratio": marginal / median_fit}


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=1, help="pairs of sweeps to time (default 1)")
    parser.add_argument("--jobs", type=int, default=12, help="jobs in the long sweep, >= 3 (default 12)")
    parser.add_argument("--json", type=Path, metavar="PATH", help="write the numbers to this JSON file")
    args = parser.parse_args(argv)
    if args.jobs < 3 or args.repeats < 1:
        parser.error("--jobs must be >= 3 and --repeats >= 1")
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    if not DLRUN.exists():
        sys.exit(f"no dlrun console script next to {sys.executable}: pip install -e . in this venv")
    print(f"sweep cost: {DLRUN}, 2 and {args.jobs} jobs, {args.repeats} repeat(s), "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-sweep-warmup-") as tmp:  # page cache, .pyc files: not timed
        run_command(sweep_command(2, Path(tmp) / "a"), Path(tmp), timeout=3600)
    repeats = []
    for r in range(args.repeats):
        repeats.append(one_repeat(args.jobs, r))
        print_repeat(r, repeats[-1], args.jobs)
    summary = summarise(repeats, args.jobs)
    print_summary(summary, args.jobs)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(summary, indent=1) + "\n")
        print(f"wrote {args.json}")


def summarise(repeats: list[dict], jobs: int) -> dict:
    keys = ("t2", f"t{jobs}", "marginal", "median_fit", "ratio")
    return {"jobs": jobs, "goal_ratio": GOAL, "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
            "repeats": repeats, **{key: spread([r[key] for r in repeats]) for key in keys},
            "quiet_gate": GATE.summary()}


def print_repeat(r: int, x: dict, jobs: int) -> None:
    print(f"repeat {r + 1}: t2 {x['t2']:.2f} s, t{jobs} {x[f't{jobs}']:.2f} s, marginal {x['marginal']:.2f} s/job, "
          f"median fit {x['median_fit']:.2f} s [{min(x['fit_seconds']):.2f}-{max(x['fit_seconds']):.2f}], "
          f"ratio {x['ratio']:.2f}", flush=True)


def print_summary(s: dict, jobs: int) -> None:
    def fmt(key: str) -> str:
        v = s[key]
        return f"{v['median']:.2f}" + (f" [{v['min']:.2f}-{v['max']:.2f}]" if v["n"] > 1 else "")

    print(f"t2 = {fmt('t2')} s, t{jobs} = {fmt(f't{jobs}')} s (whole commands, wall clock)")
    print(f"marginal = (t{jobs} - t2) / {jobs - 2} = {fmt('marginal')} s per job")
    print(f"median fit() of the {jobs} jobs = {fmt('median_fit')} s (report.json run.wall_seconds)")
    met = "met" if s["ratio"]["median"] <= GOAL else "missed"
    print(f"ratio = marginal / median fit = {fmt('ratio')} (goal <= {GOAL}: {met})")
    gate = s["quiet_gate"]
    if gate["runs"]:
        print(f"other processes used {gate['others_cores_during']['median']:.2f} cores (median, max "
              f"{gate['others_cores_during']['max']:.2f}) during the {gate['runs']} timed commands")

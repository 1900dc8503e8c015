"""Engine benchmark, section 4: the `dlrun` command in subprocesses (start-up, imports and the report are part of
what users wait for): `dlrun --help`, whether `import dlrun.cli` imports torch, a 20-epoch run, the report steps in
a fresh process, and the default run end to end."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from dlrun import config as c

from . import DLRUN, ROOT
from .settings import FULL, SETTINGS
from .timing import measure, run_command, spread

HEAVY = ("torch", "torchvision", "scipy", "sklearn", "matplotlib", "pandas")


def dlrun_command() -> list[str]:
    return [str(DLRUN)] if DLRUN.exists() else [sys.executable, "-m", "dlrun"]


def cli_section(p: dict, scratch: Path) -> dict:
    help_seconds, _ = measure(lambda i: run_command(dlrun_command() + ["--help"], scratch), p["help_repeats"])
    probe = f"import json, sys, dlrun.cli; print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    _, (proc,) = measure(lambda i: run_command([sys.executable, "-c", probe], ROOT), 1)
    return {"help": help_seconds, "heavy_modules_after_import_cli": json.loads(proc.stdout),
            "run_20_epochs": run_20_epochs(p, scratch), "report": report_steps(p, scratch),
            "default_run": default_run(p, scratch)}


def _dlrun_runs(p: dict, scratch: Path, name: str, overrides: list[str]) -> tuple[dict, list[dict]]:
    """`dlrun overrides hydra.run.dir=...` cli_repeats times: (spread of walls, each run's fit seconds and epochs)."""
    run_dirs = [scratch / f"{name}-{i}" for i in range(p["cli_repeats"])]
    wall, _ = measure(lambda i: run_command(dlrun_command() + overrides + [f"hydra.run.dir={run_dirs[i]}"], scratch),
                      p["cli_repeats"])
    reports = [json.loads((run_dir / "report.json").read_text())["run"] for run_dir in run_dirs]
    return wall, [{"fit": r["wall_seconds"], "epochs": r["epochs_run"]} for r in reports]


def run_20_epochs(p: dict, scratch: Path) -> dict:
    """A 20-epoch run of the issue's MLP, no plots: start-up + report = wall - fit's own wall."""
    wall, runs = _dlrun_runs(p, scratch, "cli-20", [
        f"trainer.max_epochs={FULL['epochs']}", "model.hidden=[256,256]", f"trainer.threads={SETTINGS['threads']}",
        "report.plots=false", "trainer.progress=false"])
    return {"wall": wall, "fit": spread([x["fit"] for x in runs]),
            "outside_fit": spread([w - x["fit"] for w, x in zip(wall["values"], runs)]),
            "epochs": [x["epochs"] for x in runs]}


def default_run(p: dict, scratch: Path) -> dict:
    """The default run, end to end."""
    wall, runs = _dlrun_runs(p, scratch, "cli-default", [f"trainer.threads={SETTINGS['threads']}"])
    return {"wall": wall, "fit": spread([x["fit"] for x in runs]), "epochs": [x["epochs"] for x in runs]}


def report_steps(p: dict, scratch: Path) -> dict:
    """The report steps of the default run, in a fresh process each (cold imports are what a user pays)."""
    child = [sys.executable, "-m", "benchmarks.bench", "engine", "--child-report"]
    _, procs = measure(lambda i: run_command(child + [str(scratch / f"report-{i}")], ROOT), p["cli_repeats"])
    steps = [json.loads(proc.stdout.strip().splitlines()[-1]) for proc in procs]
    result = {key: spread([s[key] for s in steps]) for key in steps[0] if key != "epochs"}
    result["epochs"] = [s["epochs"] for s in steps]
    return result


def child_report(run_dir: Path) -> None:
    """In a fresh process: dlrun.pipeline.run on the default config with plots on, each report step timed."""
    import dlrun.engine
    import dlrun.report
    from dlrun.pipeline import run

    timings: dict[str, float] = {}

    def timed(module, name: str, key: str):
        inner = getattr(module, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

        setattr(module, name, wrapper)  # run() imports these names at call time, so it calls the wrappers

    timed(dlrun.engine, "evaluate", "evaluate")
    timed(dlrun.report, "baselines_for", "baselines")
    timed(dlrun.report, "diagnose", "diagnose")
    timed(dlrun.report, "render", "render")
    cfg = c.Config(model=c.MLPConfig(), dataset=c.DigitsConfig(), split=c.SplitConfig(), reg=c.RegConfig(),
                   early_stop=c.EarlyStopConfig(), optim=c.OptimConfig(), sched=c.SchedConfig(),
                   trainer=c.TrainerConfig(progress="false", threads=SETTINGS["threads"]),
                   report=c.ReportConfig(plots=True), shift=c.ShiftConfig())
    t0 = time.perf_counter()
    result = run(cfg, run_dir, overrides=[])
    total = time.perf_counter() - t0
    fit_wall = result.report["run"]["wall_seconds"]
    report_seconds = sum(timings[k] for k in ("evaluate", "baselines", "diagnose", "render"))
    print(json.dumps({"total": total, "fit": fit_wall, "outside_fit": total - fit_wall, "report": report_seconds,
                      **timings, "epochs": result.report["run"]["epochs_run"]}))

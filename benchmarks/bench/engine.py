"""Engine overhead: dlrun's fit() against a minimal hand-written PyTorch loop and PyTorch Lightning's Trainer.

    .venv/bin/python -m benchmarks.bench engine            # full run: ~6 minutes on 2 cores
    .venv/bin/python -m benchmarks.bench engine --quick    # smoke check: ~1 minute, fewer repeats and epochs

One process, one sitting, the same model, data, seed and hyper-parameters for every contender. The machine this
runs on is usually shared, so contenders are interleaved (A B C, C B A, ...), every figure is a median over
repeats with its min-max spread, and ratios are medians of per-repeat paired ratios (A_r / B_r from the same
repeat, so a slow minute slows both). Sections:

1. median epoch time (train pass + validation), first epoch excluded: hand loop, dlrun's fit, Lightning
2. where dlrun's extra epoch time goes: the hand loop plus each piece of work fit() adds per batch
3. whole per-epoch cost as the user pays it: (wall(long run) - wall(short run)) / (long - short), so early
   stopping, metric rows, checkpoint checks and the progress callback are all included
4. the `dlrun` command (command.py): `dlrun --help`, whether `import dlrun.cli` imports torch, a 20-epoch run,
   the report steps (evaluate, diagnose, render with plots) in a fresh process, and the default run end to end
5. scaling (scaling.py): epoch time against dataset size (synthetic, 1k-100k samples) and MLP width (64-1024),
   plus a PNG

This module runs sections 1-3 and the whole benchmark; contenders.py holds the models and the three training
loops, settings.py the shared settings, tables.py the output. Results go to --out (JSON) and a PNG next to it;
benchmarks/RESULTS.md records a full run.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

from dlrun import config as c
from dlrun import data

from . import ROOT
from .command import child_report, cli_section
from .contenders import CASES, dlrun_fit, hand_fit, lightning_available, lightning_fit
from .scaling import plot_scaling, scaling
from .settings import FULL, QUICK, SETTINGS
from .tables import judge, machine, print_tables
from .timing import GATE, interleaved, median_after_first, paired_ratio, spread, stopwatch

# ----------------------------------------------------------------------------------------------------------------------
# sections 1-3: epoch time, attribution, whole per-epoch cost


def epoch_time(case: str, splits, p: dict, lightning: bool, scratch: Path) -> dict:
    contenders = ["hand", "dlrun"] + (["lightning"] if lightning else [])
    per_run = {name: [] for name in contenders}
    val_loss = {name: [] for name in contenders}
    for r, name in interleaved(contenders, p["repeats"]):
        model = CASES[case]()
        with GATE:
            if name == "hand":
                secs, loss = hand_fit(model, splits, p["epochs"])
            elif name == "dlrun":
                secs, loss = dlrun_fit(model, splits, p["epochs"], scratch / f"epoch-{case}-{r}")
            else:
                secs, loss = lightning_fit(model, splits, p["epochs"])
        per_run[name].append(median_after_first(secs))
        val_loss[name].append(loss)
    result = {name: spread(per_run[name]) for name in contenders}
    result["ratio"] = {name: paired_ratio(per_run[name], per_run["hand"]) for name in contenders if name != "hand"}
    # the extra time itself: per-batch dispatch work costs the same milliseconds whether matmuls run fast or slow,
    # so on a machine whose speed drifts the difference is steadier than the ratio
    result["extra"] = {name: spread([a - b for a, b in zip(per_run[name], per_run["hand"])])
                       for name in contenders if name != "hand"}
    result["final_val_loss"] = {name: statistics.median(v) for name, v in val_loss.items()}
    return result


def attribution(case: str, splits, p: dict) -> dict:
    """The hand loop with each piece of per-batch work dlrun's fit() adds, and with fused Adam."""
    variants = {"hand": {}, "+train_metrics": {"train_metrics": True},
                "+param_groups (fit: only if weight_decay > 0)": {"param_groups": True},
                "+both": {"train_metrics": True, "param_groups": True}, "fused_adam": {"fused": True}}
    per_run = {name: [] for name in variants}
    for _, name in interleaved(list(variants), p["repeats"]):
        model = CASES[case]()
        with GATE:
            secs, _ = hand_fit(model, splits, p["epochs"], **variants[name])
        per_run[name].append(median_after_first(secs))
    result = {name: spread(v) for name, v in per_run.items()}
    result["ratio"] = {name: paired_ratio(per_run[name], per_run["hand"]) for name in variants if name != "hand"}
    return result


def per_epoch_cost(case: str, splits, p: dict, scratch: Path) -> dict:
    """(wall(long) - wall(short)) / (long - short) for the hand loop and dlrun's fit(), paired per repeat.

    Also splits each contender's cost into the timed epoch span and what happens outside it per epoch (for fit:
    early stopping, the best-weights copy, the progress callback, the checkpoint-time check)."""
    short, long_ = p["short"], p["long"]
    runs = [("hand", short), ("dlrun", short), ("hand", long_), ("dlrun", long_)]
    wall: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    outside: dict[tuple[str, int], list[float]] = {run: [] for run in runs}  # wall - sum(epoch seconds)
    epoch_median: dict[str, list[float]] = {"hand": [], "dlrun": []}  # of the long runs, first epoch excluded
    hand_fit(CASES[case](), splits, 2)  # warm-up, not recorded
    dlrun_fit(CASES[case](), splits, 2, scratch / f"cost-{case}-warmup")
    for r in range(p["cost_repeats"]):
        for name, epochs in (runs if r % 2 == 0 else runs[::-1]):
            model = CASES[case]()
            out_dir = scratch / f"cost-{case}-{name}-{epochs}-{r}"
            with stopwatch() as watch:
                if name == "hand":
                    secs, _ = hand_fit(model, splits, epochs)
                else:
                    secs, _ = dlrun_fit(model, splits, epochs, out_dir)
            wall[(name, epochs)].append(watch.seconds)
            outside[(name, epochs)].append(watch.seconds - sum(secs))
            if epochs == long_:
                epoch_median[name].append(median_after_first(secs))
    return _cost_summary(wall, outside, epoch_median, short, long_)


def _cost_summary(wall: dict, outside: dict, epoch_median: dict, short: int, long_: int) -> dict:
    result = {}
    for name in ("hand", "dlrun"):
        cost = [(lw - sw) / (long_ - short) for lw, sw in zip(wall[(name, long_)], wall[(name, short)])]
        fixed = [sw - short * k for sw, k in zip(wall[(name, short)], cost)]
        beside = [(lo - so) / (long_ - short) for lo, so in zip(outside[(name, long_)], outside[(name, short)])]
        # cross-check, less sensitive to a slow second on a shared machine: median epoch + what lies outside it
        robust = [m + b for m, b in zip(epoch_median[name], beside)]
        result[name] = {"per_epoch": spread(cost), "fixed": spread(fixed), "outside_epoch_span": spread(beside),
                        "robust_per_epoch": spread(robust),
                        "wall_short": spread(wall[(name, short)]), "wall_long": spread(wall[(name, long_)])}
    result["ratio"] = paired_ratio(result["dlrun"]["per_epoch"]["values"], result["hand"]["per_epoch"]["values"])
    result["robust_ratio"] = paired_ratio(result["dlrun"]["robust_per_epoch"]["values"],
                                          result["hand"]["robust_per_epoch"]["values"])
    return result


# ----------------------------------------------------------------------------------------------------------------------
# the whole benchmark


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench engine", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and epochs (~1 minute): a smoke check")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/engine[-quick].json)")
    parser.add_argument("--child-report", type=Path, help=argparse.SUPPRESS)  # internal: section 4's fresh process
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    torch.set_num_threads(SETTINGS["threads"])
    if args.child_report:
        logging.disable(logging.WARNING)
        child_report(args.child_report)
        return

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 132)  # a log file gets readable 132-column tables
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*barebones.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.14: not ours to fix
    p = QUICK if args.quick else FULL
    out = args.out or ROOT / "benchmarks" / "results" / ("engine-quick.json" if args.quick else "engine.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    lightning = lightning_available() is not None
    if not lightning:
        console.print("[yellow]lightning is not installed: its column is skipped (pip install lightning)[/]")

    started = time.perf_counter()
    results = {"machine": machine(), "settings": {**SETTINGS, **p, "quick": args.quick},
               "load_before": [round(x, 2) for x in os.getloadavg()]}
    run_sections(results, p, lightning, console)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["quiet_gate"] = GATE.summary()
    results["seconds"] = time.perf_counter() - started
    results["targets"] = judge(results)
    m = results["machine"]
    png = out.with_name(out.stem + "-scaling.png")
    plot_scaling(results["scaling"], png, f"{m['device']} ({m['cpu']}), torch {m['torch']}, "
                                          f"{SETTINGS['threads']} threads, {m['date']}")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print_tables(results, console)
    console.print(f"\n{results['seconds']:.0f} s; wrote {out} and {png}")


def run_sections(results: dict, p: dict, lightning: bool, console) -> None:
    """Sections 1-5, in one scratch folder (the runs' folders); each adds its entry to `results`."""
    digits = data.load(c.DigitsConfig(), c.SplitConfig(), c.ShiftConfig())
    with tempfile.TemporaryDirectory(prefix="bench-engine-") as tmp:
        scratch = Path(tmp)
        results["epoch_time"], results["attribution"], results["per_epoch_cost"] = {}, {}, {}
        for case in CASES:
            console.print(f"[bold]{case}[/]: epoch time ...")
            results["epoch_time"][case] = epoch_time(case, digits, p, lightning, scratch)
            console.print(f"[bold]{case}[/]: attribution ...")
            results["attribution"][case] = attribution(case, digits, p)
            console.print(f"[bold]{case}[/]: whole per-epoch cost ...")
            results["per_epoch_cost"][case] = per_epoch_cost(case, digits, p, scratch)
        console.print("[bold]dlrun command[/] (subprocesses) ...")
        results["cli"] = cli_section(p, scratch)
        console.print("[bold]scaling[/] ...")
        results["scaling"] = scaling(p, scratch)


if __name__ == "__main__":
    main()

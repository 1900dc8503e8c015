"""Engine benchmark: the machine it ran on, the targets met or missed, and the tables printed at the end."""

from __future__ import annotations

import contextlib
import datetime
import os
import platform
import subprocess
from pathlib import Path

import torch
from rich.table import Table

from . import ROOT
from .contenders import CASES, lightning_available
from .settings import DEVICE, TARGETS


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"date": datetime.date.today().isoformat(), "cpu": cpu, "nproc": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "lightning": lightning_available(),
            "device": str(DEVICE), "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if DEVICE.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(DEVICE)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):  # which dlrun was measured
        git = ["git", "-C", str(ROOT)]
        info["commit"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        check=True).stdout.strip()
        info["dlrun_modified"] = subprocess.run(git + ["status", "--porcelain", "dlrun"], capture_output=True,
                                                text=True, check=True).stdout.split()[1::2]
    return info


def judge(results: dict) -> list[dict]:
    t = TARGETS
    rows = []
    for case in CASES:
        r = results["epoch_time"][case]["ratio"]["dlrun"]["median"]
        rows.append({"target": f"{case}: dlrun median epoch <= {t['epoch_ratio']}x hand", "measured": f"{r:.3f}x",
                     "met": r <= t["epoch_ratio"]})
        r = results["per_epoch_cost"][case]["ratio"]["median"]
        rows.append({"target": f"{case}: dlrun whole per-epoch cost <= {t['cost_ratio']}x hand",
                     "measured": f"{r:.3f}x", "met": r <= t["cost_ratio"]})
    cli = results["cli"]
    rows.append({"target": f"dlrun --help < {t['help_seconds']} s", "measured": f"{cli['help']['median']:.2f} s",
                 "met": cli["help"]["median"] < t["help_seconds"]})
    heavy = cli["heavy_modules_after_import_cli"]
    rows.append({"target": "import dlrun.cli imports no torch", "measured": ", ".join(heavy) or "none imported",
                 "met": "torch" not in heavy})
    rows.append({"target": f"report (evaluate + diagnose + render, plots) < {t['report_seconds']} s",
                 "measured": f"{cli['report']['report']['median']:.2f} s",
                 "met": cli["report"]["report"]["median"] < t["report_seconds"]})
    rows.append({"target": f"default run end to end < {t['default_run_seconds']} s",
                 "measured": f"{cli['default_run']['wall']['median']:.2f} s",
                 "met": cli["default_run"]["wall"]["median"] < t["default_run_seconds"]})
    slope = results["scaling"].get("slope_10k_100k")
    if slope is not None:
        low, high = t["scaling_slope"]
        rows.append({"target": f"near-linear in samples: slope 10k->100k in [{low}, {high}]",
                     "measured": f"hand {slope['hand']:.2f}, dlrun {slope['dlrun']:.2f}",
                     "met": all(low <= s <= high for s in slope.values())})
    return rows


# ----------------------------------------------------------------------------------------------------------------------
# the tables, in the order of the sections


def ms(s: dict, digits: int = 2) -> str:
    return f"{s['median'] * 1e3:.{digits}f} ms [{s['min'] * 1e3:.{digits}f}-{s['max'] * 1e3:.{digits}f}]"


def ratio(s: dict) -> str:
    return f"{s['median']:.3f}x [{s['min']:.3f}-{s['max']:.3f}]"


def seconds(s: dict) -> str:
    return f"{s['median']:.2f} s [{s['min']:.2f}-{s['max']:.2f}]"


def _table(title: str, columns: list[str], left: int = 1) -> Table:
    """A table whose first `left` columns are left-aligned, the others (figures) right-aligned."""
    table = Table(title=title)
    for i, col in enumerate(columns):
        table.add_column(col, justify="left" if i < left else "right")
    return table


def print_tables(results: dict, console) -> None:
    print_header(results, console)
    for make in (epoch_time_table, attribution_table, cost_table, command_table, scaling_table, targets_table):
        console.print(make(results))


def print_header(results: dict, console) -> None:
    m = results["machine"]
    console.print(f"\n[bold]device[/] {m['device']} ({m['cpu']}, {m['nproc']} cores, {m['threads']} torch threads), "
                  f"torch {m['torch']}, lightning {m['lightning'] or 'not installed'}, "
                  f"torch.cuda.is_available()={m['cuda_available']}; dlrun at {m.get('commit', '?')}"
                  f"{' + uncommitted ' + ', '.join(m['dlrun_modified']) if m.get('dlrun_modified') else ''}")
    g = results["quiet_gate"]
    if g["runs"]:
        console.print(f"[bold]shared machine[/] load average {results['load_before']} -> {results['load_after']}; "
                      f"other processes used {g['others_cores_during']['median']:.2f} cores (median, max "
                      f"{g['others_cores_during']['max']:.2f}) during the {g['runs']} timed runs; "
                      f"{g['runs_busy_during']} runs had >= {g['threshold_cores']} on average, "
                      f"{g['runs_started_busy']} started busy; {g['waited_seconds']} s spent waiting for quiet")


def epoch_time_table(results: dict) -> Table:
    s = results["settings"]
    table = _table(f"median epoch time (train + validation), epochs 2-{s['epochs']}, median \\[min-max] over "
                   f"{s['repeats']} interleaved runs",
                   ["case", "contender", "epoch", "vs hand loop", "extra per epoch", "final val loss"], left=2)
    for case, r in results["epoch_time"].items():
        for name in ("hand", "dlrun", "lightning"):
            if name in r:
                hand = name == "hand"
                table.add_row(case, name, ms(r[name]), "1" if hand else ratio(r["ratio"][name]),
                              "" if hand else ms(r["extra"][name]), f"{r['final_val_loss'][name]:.4f}")
    if not results["machine"]["lightning"]:
        table.caption = "lightning is not installed: its column is skipped (pip install lightning)"
    return table


def attribution_table(results: dict) -> Table:
    table = _table("where dlrun's extra epoch time goes: the hand loop plus one piece of fit()'s work",
                   ["case", "variant", "epoch", "vs hand loop"], left=2)
    for case, r in results["attribution"].items():
        for name in r:
            if name != "ratio":
                table.add_row(case, name, ms(r[name]), ratio(r["ratio"][name]) if name != "hand" else "1")
    return table


def cost_table(results: dict) -> Table:
    s = results["settings"]
    table = _table(f"whole per-epoch cost: (wall({s['long']} epochs) - wall({s['short']} epochs)) / "
                   f"{s['long'] - s['short']}, {s['cost_repeats']} interleaved repeats",
                   ["case", "contender", "per epoch", "vs hand loop", "of it outside the epoch span", "fixed per run",
                    "cross-check: median epoch + outside", "vs hand loop "], left=2)
    for case, r in results["per_epoch_cost"].items():
        for name in ("hand", "dlrun"):
            dl = name == "dlrun"
            table.add_row(case, name, ms(r[name]["per_epoch"]), ratio(r["ratio"]) if dl else "1",
                          ms(r[name]["outside_epoch_span"], 3), ms(r[name]["fixed"], 1),
                          ms(r[name]["robust_per_epoch"]), ratio(r["robust_ratio"]) if dl else "1")
    return table


def command_table(results: dict) -> Table:
    cli = results["cli"]
    table = _table("the dlrun command (subprocesses), median \\[min-max]", ["what", "wall"])
    table.add_row(f"dlrun --help (n={cli['help']['n']})", seconds(cli["help"]))
    table.add_row("heavy modules after `import dlrun.cli`", ", ".join(cli["heavy_modules_after_import_cli"]) or "none")
    run20 = cli["run_20_epochs"]
    table.add_row(f"dlrun, MLP, 20 epochs, no plots (n={run20['wall']['n']})", seconds(run20["wall"]))
    table.add_row("   of which fit()", seconds(run20["fit"]))
    table.add_row("   outside fit (start-up, data, evaluate, report)", seconds(run20["outside_fit"]))
    rep = cli["report"]
    table.add_row(f"default run in a fresh process, report steps (n={rep['report']['n']})", seconds(rep["report"]))
    for key in ("evaluate", "baselines", "diagnose", "render"):
        table.add_row(f"   {key}", ms(rep[key], 0))
    table.add_row("   run() outside fit (data, model, report; torch already imported)", seconds(rep["outside_fit"]))
    d = cli["default_run"]
    table.add_row(f"default `dlrun trainer.threads=2` end to end ({d['epochs']} epochs)", seconds(d["wall"]))
    return table


def scaling_table(results: dict) -> Table:
    s, sc = results["settings"], results["scaling"]
    table = _table(f"scaling: median epoch time, epochs 2-{s['scaling_epochs']}, {s['scaling_repeats']} interleaved "
                   f"repeats", ["data / model", "hand", "dlrun", "dlrun vs hand", "us/sample hand", "us/sample dlrun"])
    for row in sc["sizes"]:
        table.add_row(f"synthetic n={row['n_samples']} (train {row['n_train']}), MLP 256", ms(row["hand"]),
                      ms(row["dlrun"]), ratio(row["ratio"]), f"{row['us_per_sample']['hand']:.2f}",
                      f"{row['us_per_sample']['dlrun']:.2f}")
    for row in sc["widths"]:
        table.add_row(f"digits, MLP width {row['width']}", ms(row["hand"]), ms(row["dlrun"]), ratio(row["ratio"]),
                      "", "")
    if "slope_10k_100k" in sc:
        table.caption = (f"log-log slope of epoch time against samples, 10k -> 100k: hand "
                         f"{sc['slope_10k_100k']['hand']:.2f}, dlrun {sc['slope_10k_100k']['dlrun']:.2f} "
                         f"(1 = linear)")
    return table


def targets_table(results: dict) -> Table:
    table = Table(title="targets (from the issue)")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("met")
    for row in results["targets"]:
        table.add_row(row["target"], row["measured"], "[green]met[/]" if row["met"] else "[bold red]missed[/]")
    return table

"""The terminal: a rich progress bar per epoch, then the summary table and the verdict panel.

Only cli.py creates a TerminalUI; the pipeline calls it through four methods (see pipeline.NullUI).
Updating a rich Progress is a few microseconds; it redraws on its own thread at `refresh_per_second`.
"""

from __future__ import annotations

import sys
from typing import Any, Optional

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

SEVERITY_STYLE = {"none": "green", "mild": "yellow", "severe": "bold red"}


def _interval(pair: Any, digits: int = 3) -> str:
    """[0.011, 0.043], or - without one."""
    if not pair or any(bound is None for bound in pair):
        return "-"
    return f"[{_fmt(pair[0], digits)}, {_fmt(pair[1], digits)}]"


def _fmt(value: Any, digits: int = 4) -> str:
    from dlrun.sweep.summary import fmt

    return "-" if value is None else fmt(value, digits)


class TerminalUI:
    def __init__(self, progress: str = "auto"):
        self.console = Console(stderr=True)
        self.enabled = {"true": True, "false": False}.get(str(progress).lower(), self.console.is_terminal)
        self.progress: Optional[Progress] = None
        self.task = None

    def start(self, max_epochs: int, start_epoch: int) -> None:
        if not self.enabled:
            return
        self.progress = Progress(
            TextColumn("[bold]epoch"), MofNCompleteColumn(), BarColumn(), TextColumn("{task.fields[metrics]}"),
            TimeElapsedColumn(), console=self.console, refresh_per_second=8, transient=False)
        self.task = self.progress.add_task("train", total=max_epochs, completed=start_epoch, metrics="")
        self.progress.start()

    def on_epoch(self, row: dict, max_epochs: int) -> None:
        if self.progress is None:
            return
        metrics = (f"train_loss {row['train_loss']:.4f}  val_loss {row['val_loss']:.4f}  "
                   f"val_error {row['val_error']:.4f}")
        self.progress.update(self.task, completed=int(row["epoch"]), metrics=metrics)

    def stop(self) -> None:
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def summary(self, report: dict) -> None:
        from dlrun.report.render import first_action

        out = Console()  # the summary goes to stdout; piped output gets a wider page than rich's default 80
        if not out.is_terminal:
            out = Console(width=120)
        run = report["run"]
        best = f"weights of epoch {run['best_epoch']}" if run["best_epoch"] else "no finite epoch"
        out.print(f"[bold]{run['model']} on {run['dataset']}[/]: {run['epochs_run']} epochs ({best}), stopped: "
                  f"{run['stop_reason']}")
        table = Table()
        table.add_column("split")
        table.add_column("n", justify="right")
        table.add_column("loss", justify="right")
        table.add_column("interval", justify="right")
        metric = "error" if run["task"] == "classification" else "RMSE"
        table.add_column(metric, justify="right")
        table.add_column("interval", justify="right")
        for name, m in report["metrics"].items():
            table.add_row(name, str(m["n"]), _fmt(m["loss"]), _interval(m.get("loss_interval")), _fmt(m["error"]),
                          _interval(m.get("error_interval")))
        out.print(table)
        lines = []
        for name, finding in report["diagnosis"].items():
            style = SEVERITY_STYLE.get(finding["severity"], "")
            verdict = finding["severity"] if finding["detected"] else "no"
            lines.append(f"[{style}]{name.replace('_', ' '):<20} {verdict}[/]")
            if finding["detected"] and finding["evidence"]:
                lines.append(f"   {escape(finding['evidence'][0])}")
        top_action = first_action(report)  # the report's "First command"
        if top_action:
            lines.append(f"\n[bold]next:[/] {escape(top_action['lead'])}: {escape(top_action['text'])} "
                         "(the command is below)")
        out.print(Panel("\n".join(lines), title="diagnosis", expand=False))
        # below the panel, whole and unwrapped: a command wrapped inside the border copies as broken pieces
        if top_action:
            out.print(top_action["command"], soft_wrap=True, markup=False, highlight=False, style="cyan")
        out.print(f"report: {report['files']['markdown']}", soft_wrap=True, markup=False, highlight=False)
        if run.get("interrupted"):
            print("the run was interrupted (a partial report); to continue it from its last checkpoint:",
                  file=sys.stderr)
            print(f"  {run.get('resume_command', 'dlrun ... trainer.resume=RUN_DIR')}", file=sys.stderr)


SHORT = {"underfitting": "underfit", "overfitting": "overfit", "data_mismatch": "mismatch",
         "distribution_shift": "shift"}


def sweep_table(summary: dict, sweep_dir: str, console: Optional[Console] = None) -> None:
    """The sweep's jobs as a table (best first, swept keys as columns), the failures below it, then where the
    summary files are."""
    # a log file or a pipe gets wide lines (rich would assume 80 columns); a terminal, its own width
    console = console or Console(stderr=True, highlight=False, soft_wrap=True,
                                 width=None if sys.stderr.isatty() else 160)
    from dlrun.sweep.summary import ranked_cell, tally, with_interval

    metric, mode = summary["rank_by"]["metric"], summary["rank_by"]["mode"]
    table = Table(title=f"sweep: {tally(summary)}; ranked by {metric} ({mode})")
    for column in ("job", *summary["swept"], metric, "val err", "test err", "stop", "verdicts"):
        table.add_column(column, justify="left" if column in ("stop", "verdicts") else "right",
                         overflow="fold" if column == "verdicts" else "ellipsis")
    for i, r in enumerate(summary["jobs"]):
        fired = [f"{SHORT.get(name, name)}:{sev}" for name, sev in r["verdicts"].items() if sev != "no"]
        table.add_row(r["job"], *(r["params"].get(k, "") for k in summary["swept"]), ranked_cell(r, summary),
                      with_interval(r["val_error"], r.get("val_interval")),
                      with_interval(r["test_error"], r.get("test_interval")),
                      str(r["stop_reason"]),
                      " ".join(fired) or "none", style="bold green" if r["job"] == summary["best"] else None)
    for r in summary["failed"]:
        table.add_row(r["job"], *(r["params"].get(k, "") for k in summary["swept"]), "-", "-", "-",
                      "failed", f"exit {r['exit_status']}", style="red")
    console.print(table)
    for g in summary.get("folds") or []:
        setting = " ".join(f"{k}={v}" for k, v in g["setting"].items()) or "all jobs"
        console.print(f"k-fold {setting}: {metric} {_fmt(g['ranked_mean'])} ± {_fmt(g['ranked_std'])} "
                      f"over {g['folds']} folds")
    for r in summary["failed"]:
        console.print(f"[red]job {r['job']} failed:[/] {escape(r['error'])}", markup=True)
    if summary["missing"]:
        console.print(f"without a report (still running, killed, or never started): job "
                      f"{', '.join(summary['missing'])}", markup=False)
    if summary["best"] is not None:
        from dlrun.sweep.summary import runner_up_sentence

        if runner_up_sentence(summary):
            console.print(runner_up_sentence(summary), markup=False, highlight=False, soft_wrap=True)
        console.print(f"best job {summary['jobs'][0]['job']} alone:")
        console.print(summary["jobs"][0]["command"], markup=False, highlight=False, soft_wrap=True)
    console.print(f"summary: {sweep_dir}/summary.html (also .md, .csv, .json)")

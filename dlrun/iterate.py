"""`dlrun-iterate`: the diagnose-and-retry method as a loop (run -> diagnose -> change one thing -> run again).

    dlrun-iterate [--config-dir DIR] [OVERRIDES ...] [iterate.budget=6] [iterate.dir=PATH]

Each step is a normal `dlrun` run in its own folder (ITERATE_DIR/step_N). After a step the loop reads its report.json
and picks the next change from the report itself: the actions of the finding that Ng's `focus` names first (avoidable
bias -> underfitting, variance -> overfitting, data mismatch), then those of the other findings, in the report's
order, and last a linear model when the report found one doing better on the same validation samples (a note when
no verdict fired). A step whose validation error is not lower than the best so far is reverted: the next step starts
again from the best configuration with that configuration's next-ranked action. The loop stops when the report of
the best configuration suggests no run (no verdict fires, no linear model does better), when no untried action is
left, or when `iterate.budget` runs have been made.

Only training and validation figures decide: the distribution-shift verdict and the test error come from the test
split, which is evaluated in every run and written down, but never used to choose. Each step is compared with the
best configuration before it on the same validation samples (the runs' predictions.csv, stats.paired_error_difference):
the difference with its 95% interval, "confirmed" when the interval excludes 0, else "within noise". The loop writes
iterate.md and iterate.json: for every step the overrides, what changed and why, the figures with their intervals,
the comparison and the verdicts, and at the end the best configuration as one `dlrun ...` line.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Optional

from dlrun.errors import DlrunError
from dlrun.report.diagnosis import FOCUS_FINDING, note_actions

USAGE = __doc__.split("\n\n")[1]
DEFAULTS = {"budget": 6, "dir": None}
# the findings the loop may act on: all three are judged on training, train-dev and validation data only
ACTIONABLE = FOCUS_FINDING  # focus -> its finding
FINISHED = (0, 4, 5)  # dlrun's exit codes for a run with a report: done, diverged, report.fail_on


@dataclass
class Step:
    index: int
    run_dir: str
    overrides: list[str]
    parent: Optional[int]  # the step whose configuration this one changed
    change: dict[str, str]  # key -> new value against the parent ("(removed)" for a dropped override)
    reason: str  # the finding and action that led here ("start" for the first)
    exit_status: int
    train_error: Optional[float] = None
    train_interval: Optional[list] = None  # 95% intervals of the errors (report.json)
    val_error: Optional[float] = None
    val_interval: Optional[list] = None
    test_error: Optional[float] = None  # evaluated, never used to choose
    test_interval: Optional[list] = None
    vs_best: Optional[dict] = None  # val error against the best configuration before this step, sample by sample
    verdicts: dict[str, str] = field(default_factory=dict)
    focus: Optional[str] = None
    kept: bool = False  # the best configuration so far after this step


def parse(argv: list[str]) -> tuple[dict, list[str], list[str]]:
    """(loop settings, launch arguments such as --config-dir DIR, dlrun overrides)."""
    settings, launch, overrides = dict(DEFAULTS), [], []
    args = iter(argv)
    for arg in args:
        if arg in ("--config-dir", "-cd"):
            launch += ["--config-dir", str(Path(next(args, ".")).expanduser().resolve())]
        elif arg.startswith("--config-dir="):
            launch += ["--config-dir", str(Path(arg.split("=", 1)[1]).expanduser().resolve())]
        elif arg.startswith("iterate."):
            key, _, value = arg[len("iterate."):].partition("=")
            if key not in DEFAULTS:
                raise DlrunError(f"iterate.{key} is not a setting of dlrun-iterate, expected one of "
                                 f"{', '.join('iterate.' + k for k in DEFAULTS)}")
            settings[key] = value
        elif arg.startswith("-"):
            raise DlrunError(f"dlrun-iterate runs single configurations step by step: {arg} is not supported "
                             "(give dlrun overrides, --config-dir DIR and iterate.* settings)")
        else:
            overrides.append(arg)
    try:
        settings["budget"] = int(settings["budget"])
    except ValueError:
        raise DlrunError(f"iterate.budget={settings['budget']!r}: expected a whole number of runs >= 1") from None
    if settings["budget"] < 1:
        raise DlrunError(f"iterate.budget={settings['budget']}: expected a whole number of runs >= 1")
    return settings, launch, overrides


def _key(item: str) -> str:
    return item.split("=", 1)[0].lstrip("+~")


def overrides_of(command: str) -> list[str]:
    """The overrides of a `dlrun ...` line the report wrote (after `dlrun` and its launch options)."""
    words = shlex.split(command)
    words = words[words.index("dlrun") + 1:] if "dlrun" in words else words
    out, skip = [], False
    for word in words:
        if skip:
            skip = False
        elif word in ("--config-dir", "-cd"):
            skip = True
        elif not word.startswith("-"):
            out.append(word)
    last = {_key(o): o for o in out if _key(o) not in ("hydra.run.dir", "trainer.resume", "trainer.overwrite")}
    return list(last.values())  # one item per key, the last value, in the order the keys first appeared


def change_between(before: list[str], after: list[str]) -> dict[str, str]:
    old = {_key(o): o.split("=", 1)[1] for o in before if "=" in o}
    new = {_key(o): o.split("=", 1)[1] for o in after if "=" in o}
    changed = {k: v for k, v in new.items() if old.get(k) != v}
    changed.update({k: "(removed)" for k in old if k not in new})
    return changed


def candidates(report: dict) -> list[tuple[str, str, list[str]]]:
    """(finding, action text, overrides) to try next, best first: the focus's finding, then the others."""
    focus = report.get("decomposition", {}).get("focus")
    order = [ACTIONABLE[focus]] if focus in ACTIONABLE else []
    order += [f for f in ACTIONABLE.values() if f not in order]
    out = []
    for name in order:
        finding = report["diagnosis"].get(name, {})
        if finding.get("detected"):
            out += [(name, a["text"], overrides_of(a["command"])) for a in finding.get("actions", []) if a["command"]]
    # the notes' suggestions (a linear model that does better on the same validation samples; more epochs for a
    # validation loss still falling at max_epochs), last
    for name, action in note_actions(report):
        if action.get("command") and overrides_of(action["command"]) not in [c[2] for c in out]:
            out.append((name, action["text"], overrides_of(action["command"])))
    return out




def run_step(index: int, overrides: list[str], launch: list[str], folder: Path) -> tuple[int, Optional[dict]]:
    """One `dlrun` run in folder/step_N; (exit status, its report.json or None)."""
    run_dir = folder / f"step_{index}"
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    # no progress bar: the output is a pipe, and trainer.progress=auto draws only on a terminal
    command = [sys.executable, "-m", "dlrun", *launch, *overrides, f"hydra.run.dir={run_dir}"]
    with subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) as proc:
        try:
            output, _ = proc.communicate()
        except KeyboardInterrupt:  # the step got the Ctrl-C too: let it write its checkpoint and partial report
            output, _ = proc.communicate()
            (folder / f"step_{index}.log").write_text(output)
            raise
    (folder / f"step_{index}.log").write_text(output)
    path = run_dir / "report.json"
    report = json.loads(path.read_text()) if proc.returncode in FINISHED and path.is_file() else None
    return proc.returncode, report


def step_state(run_dir: Path) -> str:
    """What a step stopped by Ctrl-C left, from its folder: a finished run (the signal came after its report), a
    checkpoint and a partial report, or nothing to resume."""
    path = run_dir / "report.json"
    report = json.loads(path.read_text()) if path.is_file() else None
    if report is not None and not report["run"].get("interrupted"):
        return "its run had finished; its report is complete"
    if (run_dir / "checkpoints" / "last.pt").is_file():
        return "its checkpoint and partial report"
    return "nothing saved yet"


def comparison_text(vs: Optional[dict], task: Optional[str]) -> str:
    """'-4.4 pts [-6.1, -2.8] vs step 0, lower (confirmed)' or '... within noise'; '' without a comparison."""
    from dlrun.report.predictions import difference_text, verdict_text

    if not vs:
        return ""
    if "note" in vs:
        return f"vs step {vs['step']}: {vs['note']}"
    return f"{difference_text(vs, task)} vs step {vs['step']}, {verdict_text(vs)}"


def _fired(report: dict) -> dict[str, str]:
    return {name: f["severity"] for name, f in report["diagnosis"].items() if f.get("detected")}


def loop(settings: dict, launch: list[str], overrides: list[str], folder: Path, say=print) -> dict:
    """Run the loop; returns what iterate.json holds."""
    from dlrun.report.predictions import compare, read_val

    folder.mkdir(parents=True, exist_ok=True)
    steps: list[Step] = []
    tried: dict[int, set[str]] = {}  # step index -> change keys already tried from it
    best: Optional[Step] = None
    best_report: Optional[dict] = None
    predictions: dict[int, Optional[dict]] = {}  # step index -> its validation predictions
    task: Optional[str] = None
    current, parent, reason = list(overrides), None, "start"
    stop = "the budget of runs is spent"
    while len(steps) < settings["budget"]:
        try:
            status, report = run_step(len(steps), current, launch, folder)
        except KeyboardInterrupt:
            stop = (f"stopped by Ctrl-C during step {len(steps)} ({folder}/step_{len(steps)}: "
                    f"{step_state(folder / f'step_{len(steps)}')}); the steps before it are below")
            say(stop)
            break
        step = Step(len(steps), str(folder / f"step_{len(steps)}"), current, parent,
                    change_between(steps[parent].overrides, current) if parent is not None else {}, reason, status)
        if report is not None:
            metrics = report["metrics"]
            step.train_error, step.val_error = metrics["train"]["error"], metrics["val"]["error"]
            step.test_error = metrics["test"]["error"]
            step.train_interval, step.val_interval, step.test_interval = (
                metrics[split].get("error_interval") for split in ("train", "val", "test"))
            step.verdicts, step.focus = _fired(report), report["decomposition"].get("focus")
            task = task or report.get("run", {}).get("task")
            predictions[step.index] = read_val(Path(step.run_dir))
            if best is not None:
                step.vs_best = {"step": best.index,
                                **compare(task, predictions.get(best.index), predictions[step.index])}
        better = report is not None and step.val_error is not None and (
            best is None or best.val_error is None or step.val_error < best.val_error)
        if better:
            best, best_report, step.kept = step, report, True
            tried.setdefault(step.index, set())
        steps.append(step)
        versus = comparison_text(step.vs_best, task)
        say(f"step {step.index}: {' '.join(current) or '(defaults)'} -> val error "
            f"{_error(step.val_error, step.val_interval, task)}{f' ({versus})' if versus else ''}"
            f"{'' if step.kept else ', not lower: reverted'}; verdicts: {', '.join(step.verdicts) or 'none'}")
        if best_report is None:
            stop = f"the first run did not finish (exit status {status}): see {folder}/step_0.log"
            break
        if not any(name in ACTIONABLE.values() for name in _fired(best_report)) and not note_actions(best_report):
            stop = "no verdict fires on the best configuration"
            break
        nxt = next(((name, text, o) for name, text, o in candidates(best_report)
                    if frozenset(change_between(best.overrides, o)) not in tried[best.index]
                    and change_between(best.overrides, o)), None)
        if nxt is None:
            stop = "every action the report suggests for the best configuration was tried"
            break
        name, text, current = nxt
        tried[best.index].add(frozenset(change_between(best.overrides, current)))
        parent, reason = best.index, f"{name}: {text}"
    else:
        stop = "the budget of runs is spent"
    overall = {"step": 0, **compare(task, predictions.get(0), predictions.get(best.index))} \
        if best is not None and best.index != 0 else None
    return {"steps": [asdict(s) for s in steps], "best_step": best.index if best else None, "task": task,
            "best_vs_start": overall,
            "best_command": " ".join(["dlrun", *map(shlex.quote, launch), *map(shlex.quote, best.overrides)])
            if best else None, "stopped": stop, "budget": settings["budget"],
            "decided_on": "training and validation figures only: the test error is evaluated, never used to choose",
            "interrupted": stop.startswith("stopped by Ctrl-C")}


def _error(value: Optional[float], interval: Optional[list], task: Optional[str]) -> str:
    """12.3% [9.4, 15.9] (classification) or 0.4321 [...] (regression RMSE); n/a when missing."""
    if value is None:
        return "n/a"
    percent = task != "regression"
    text = f"{100 * value:.1f}%" if percent else f"{value:.4g}"
    if interval and None not in interval:
        text += f" [{100 * interval[0]:.1f}, {100 * interval[1]:.1f}]" if percent else \
            f" [{interval[0]:.4g}, {interval[1]:.4g}]"
    return text


def render_markdown(result: dict) -> str:
    task = result.get("task")
    lines = ["# dlrun-iterate", "", f"Stopped: {result['stopped']}. Decisions use {result['decided_on']}. "
             "A step is kept when its validation error is lower than the best so far; the comparison with that "
             "best, on the same validation samples with its 95% interval, says whether the change is confirmed "
             "or within noise.", "",
             "| step | change | why | train error | val error | val error vs the best before | "
             "test error (not used) | verdicts | kept |",
             "|---:|---|---|---:|---:|---|---:|---|---|"]
    for s in result["steps"]:
        change = " ".join(f"`{k}={v}`" for k, v in s["change"].items()) or "(start)"
        verdicts = ", ".join(f"{k} ({v})" for k, v in s["verdicts"].items()) or "none"
        lines.append(f"| {s['index']} | {change} | {s['reason']} | "
                     f"{_error(s['train_error'], s.get('train_interval'), task)} | "
                     f"{_error(s['val_error'], s.get('val_interval'), task)} | "
                     f"{comparison_text(s.get('vs_best'), task) or '-'} | "
                     f"{_error(s['test_error'], s.get('test_interval'), task)} | "
                     f"{verdicts} | {'yes' if s['kept'] else 'reverted'} |")
    if result["best_command"]:
        lines += ["", f"Best configuration (step {result['best_step']}):", "", "```bash", result["best_command"], "```"]
        overall = comparison_text(result.get("best_vs_start"), task)
        if overall:
            lines += ["", f"Its validation error against the start: {overall}."]
    return "\n".join(lines) + "\n"


def main(argv: Optional[list[str]] = None) -> None:
    from dlrun.cli import CONF_DIR, _fail

    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in ("-h", "--help"):
        print(__doc__)
        return
    try:
        settings, launch, overrides = parse(argv)
        from dlrun.preflight import check_command_line

        check_command_line([*launch, *overrides], CONF_DIR)  # a typo fails now, not after the first run
        folder = Path(settings["dir"] or Path("outputs") / "iterate" / time.strftime("%Y-%m-%d_%H-%M-%S"))
        result = loop(settings, launch, overrides, folder)
    except DlrunError as err:
        _fail(str(err))
        return
    from dlrun.engine.checkpoint import atomic_write_text

    atomic_write_text(folder / "iterate.json", json.dumps(result, indent=2) + "\n")
    atomic_write_text(folder / "iterate.md", render_markdown(result))
    print(f"stopped: {result['stopped']}; {folder / 'iterate.md'}")
    if result["best_command"]:
        print(f"best configuration (step {result['best_step']}):\n{result['best_command']}")
    if result["interrupted"]:
        sys.exit(130)

"""One run, as the data flow in STYLE.md: data -> model -> fit -> evaluate -> diagnose -> render.

Receives plain dataclasses (OmegaConf.to_object), so a test or a notebook calls run() without Hydra.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional

from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

# the groups whose values must match for a resume to continue the same training, and the keys that may change:
# extending a run (more epochs, more patience) is the point of resuming; the device and the report are not training
RESUME_GROUPS = ("model", "dataset", "split", "shift", "reg", "optim", "sched", "early_stop", "trainer")
RESUME_MAY_CHANGE = {"early_stop.patience", "trainer.max_epochs", "trainer.resume", "trainer.device",
                     "trainer.progress", "trainer.checkpoint_every", "trainer.tensorboard", "trainer.threads",
                     "trainer.compile", "trainer.overwrite"}


@dataclass
class RunResult:
    report: dict  # the content of report.json
    run_dir: Path
    exit_code: int  # 0; 128 + signal number when interrupted
    objective: Optional[float]  # the best monitored value, for Hydra sweepers
    signal: Optional[int] = None  # the signal that stopped the run (cli.py hands it on to a launcher's handler)
    skipped: bool = False  # trainer.resume=auto found this run already finished: nothing was trained


class NullUI:
    """What run() calls on the terminal; cli.py passes a rich implementation (dlrun/console.py)."""

    def start(self, max_epochs: int, start_epoch: int) -> None: ...

    def on_epoch(self, row: dict, max_epochs: int) -> None: ...

    def stop(self) -> None: ...

    def summary(self, report: dict) -> None: ...


def _as_dict(cfg: Any) -> dict:
    """The config as plain containers: saved in checkpoints, compared on resume, read by the diagnosis."""
    from omegaconf import OmegaConf

    return OmegaConf.to_container(OmegaConf.structured(cfg))


def _setup(trainer: Any) -> None:
    import torch

    from dlrun.engine.devices import cpu_threads

    from dlrun.report import background

    threads = cpu_threads(trainer.threads)
    if threads and str(trainer.threads) == "auto" and background.enabled():
        # a sweep's plot helper takes a core: torch's spinning threads slow down by tens of times when a core they
        # count on is busy (measured here: 52 s instead of 2.5 s for the default run's fit)
        threads = max(1, threads - 1)
    if threads:
        torch.set_num_threads(threads)
    if trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(trainer.seed)


def _clear_run(run_dir: Path) -> None:
    """trainer.overwrite=true: remove an earlier run's results (not .hydra/ or the log, which belong to this run)."""
    import shutil

    for path in [run_dir / "checkpoints", run_dir / "plots", run_dir / "hparams", *run_dir.glob("events.out.tfevents.*"),
                 *(run_dir / name for name in ("metrics.csv", "dynamics.csv", "predictions.csv", "report.json",
                                               "report.md", "report.html"))]:
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


def _changed_settings(state: dict, cfg: Any) -> list[str]:
    """The settings of cfg that differ from those a checkpoint was trained with, except those a resume may change."""
    saved = state.get("meta", {}).get("config", {})
    now = _as_dict(cfg)
    return [f"{group}.{k}={saved[group][k]!r} (now {now[group].get(k)!r})"
            for group in RESUME_GROUPS if group in saved for k in saved[group]
            if f"{group}.{k}" not in RESUME_MAY_CHANGE and saved[group][k] != now[group].get(k)]


def _resume_state(cfg: Any) -> Optional[dict]:
    """Load trainer.resume's last.pt (+ best.pt) and check it continues this config."""
    from dlrun.engine import checkpoint

    path = checkpoint.find(cfg.trainer.resume)
    state = checkpoint.load(path, required=checkpoint.REQUIRED["last.pt"])
    if cfg.trainer.max_epochs < state["epoch"]:
        original = state.get("meta", {}).get("config", {}).get("trainer", {}).get("max_epochs")
        raise DlrunError(f"trainer.max_epochs={cfg.trainer.max_epochs} is below the {state['epoch']} epochs the "
                         f"checkpoint {path} has trained already: nothing would train; give at least "
                         f"{state['epoch'] + 1} to train further" + (f" (the run was set to {original})" if original
                                                                    else ""))
    diffs = _changed_settings(state, cfg)
    if diffs:
        command = " ".join(["dlrun", *state["meta"].get("overrides", []), f"trainer.resume={cfg.trainer.resume}"])
        raise DlrunError(f"trainer.resume={cfg.trainer.resume}: the checkpoint was trained with "
                         f"{', '.join(diffs)}; a resume may change only {', '.join(sorted(RESUME_MAY_CHANGE))}. "
                         f"Repeat the original overrides: {command}")
    best_path = path.parent / "best.pt"
    if best_path.is_file():
        best = checkpoint.load(best_path)
        last_best = state.get("early_stop", {}).get("best_epoch")
        if last_best is not None and best.get("epoch") != last_best:
            raise DlrunError(f"trainer.resume={cfg.trainer.resume}: {best_path} holds epoch {best.get('epoch')} but "
                             f"{path} says the best epoch is epoch {last_best}: the two files come from different "
                             "runs or one was replaced; resume from a run folder whose checkpoints belong together")
        state["best_model"] = best["model"]
    log.info("resuming from %s at epoch %d", path, state["epoch"])
    return state


def finished_report(run_dir: Path) -> Optional[dict]:
    """The report.json of a run that ended (not interrupted) in run_dir, else None: what trainer.resume=auto skips."""
    import json

    path = Path(run_dir) / "report.json"
    try:
        report = json.loads(path.read_text())
    except (OSError, ValueError):
        return None  # none, or unreadable: the run did not finish (reports are written atomically)
    return None if report.get("run", {}).get("interrupted", True) else report


def check_auto_resume(cfg: Any, run_dir: Path) -> Optional[dict]:
    """trainer.resume=auto on a folder that holds a finished run: its report.json when the run had this config's
    settings (but for those a resume may change), else a DlrunError; None when the folder holds no finished run."""
    finished = finished_report(run_dir)
    last = Path(run_dir) / "checkpoints" / "last.pt"
    if finished is not None and last.is_file():  # a finished run stands for this one only if it had these settings
        from dlrun.engine import checkpoint

        diffs = _changed_settings(checkpoint.load(last), cfg)
        if diffs:
            raise DlrunError(f"trainer.resume=auto: {run_dir} holds a finished run trained with {', '.join(diffs)}: "
                             "it is another run, not this one; choose another folder, or replace it with "
                             "trainer.overwrite=true instead of trainer.resume")
    return finished


def check_resume_here(cfg: Any, run_dir: Path) -> None:
    """A resume into run_dir (trainer.resume=auto, or the folder itself) checked before anything is written into it:
    the finished run or the checkpoint it continues must have this config's settings (a refused resume must not
    leave the folder's .hydra/ describing the refused command)."""
    from dataclasses import replace

    from dlrun.engine import checkpoint

    if cfg.trainer.resume == "auto":
        if check_auto_resume(cfg, run_dir) is not None or not (run_dir / "checkpoints" / "last.pt").is_file():
            return
        cfg = replace(cfg, trainer=replace(cfg.trainer, resume=str(run_dir)))
    elif checkpoint.find(cfg.trainer.resume).parent.parent.resolve() != run_dir.resolve():
        return  # resumed from another folder: this one is new
    _resume_state(cfg)


def _auto_resume(cfg: Any, run_dir: Path) -> tuple[Any, Optional[dict]]:
    """trainer.resume=auto: (cfg, finished report) when run_dir holds a finished run, (cfg resuming run_dir, None) when
    it holds a checkpoint, (cfg starting afresh, None) when it holds neither. What a requeued Slurm job or a resumed
    sweep needs: rerun the same command, and every job continues where it stopped."""
    from dataclasses import replace

    finished = check_auto_resume(cfg, run_dir)
    has_checkpoint = (run_dir / "checkpoints" / "last.pt").is_file()
    resume = str(run_dir) if has_checkpoint and finished is None else None
    if finished is not None:
        log.info("trainer.resume=auto: %s holds a finished run (report.json): not trained again", run_dir)
    elif resume:
        log.info("trainer.resume=auto: continuing the run in %s", run_dir)
    return replace(cfg, trainer=replace(cfg.trainer, resume=resume)), finished


def resume_command(overrides: list[str], run_dir: Path, launch: str = "dlrun") -> str:
    """The command that continues this run: its own launch prefix and overrides, pointed at its own folder."""
    import shlex

    keep = [o for o in overrides if o.split("=", 1)[0].lstrip("+~") not in ("trainer.resume", "hydra.run.dir")]
    return " ".join([launch, *(shlex.quote(o) for o in keep), shlex.quote(f"trainer.resume={run_dir}")])


def _relaunch(diagnosis: Any, launch: str) -> None:
    """Every next-run command the diagnosis wrote starts with `dlrun`: give it this run's own launch prefix
    (--config-dir, torchrun), so that copying it runs the same configuration plus the change."""
    if launch == "dlrun":
        return
    for finding in diagnosis.findings().values():
        for action in finding.actions:
            if action.command and action.command.startswith("dlrun"):
                action.command = launch + action.command[len("dlrun"):]
    for entry in getattr(diagnosis, "health", []):
        for action in entry["actions"]:
            if action["command"].startswith("dlrun"):
                action["command"] = launch + action["command"][len("dlrun"):]


def _report(cfg: Any, settings: dict, run_dir: Path, overrides: list[str], splits, model, history, n_params: int,
            ui, launch: str = "dlrun") -> dict:
    """evaluate -> diagnose -> render, for a trained model (run) or a reloaded one (rebuild_report)."""
    import torch

    import dlrun
    from dlrun.engine import evaluate
    from dlrun.report import baselines_for, diagnose
    from dlrun.report.render import render

    evaluation = evaluate(model, splits, cfg.trainer)
    baselines = baselines_for(splits)
    run_info = {
        "overrides": list(overrides), "seed": cfg.trainer.seed, "device": history.device,
        "precision": history.precision, "torch_version": torch.__version__, "dlrun_version": dlrun.__version__,
        "epochs_run": history.epochs_run, "max_epochs": cfg.trainer.max_epochs, "best_epoch": history.best_epoch,
        "stop_reason": history.stop_reason, "wall_seconds": history.wall_seconds, "parameters": n_params,
        "resumed_from": history.resumed_from,  # wall_seconds counts the epochs after it only
        "model": cfg.model.family, "dataset": cfg.dataset.name, "task": splits.task,
        "shift": splits.shift, "shift_detail": getattr(splits, "shift_detail", ""),
        "interrupted": history.stop_reason == "interrupted",
        "interval_level": 1 - cfg.report.alpha,  # the confidence of every interval in metrics
        "world_size": history.world_size, "notes": list(getattr(history, "notes", [])),
        "origins": getattr(splits, "origins", None) or {"val": "split", "test": "split"},
        # what a sweeper optimises and the sweep summary ranks by: one metric, one direction (early_stop.monitor)
        "objective": {"monitor": cfg.early_stop.monitor, "mode": "max" if cfg.early_stop.mode == "max" else "min",
                      "value": objective(history, cfg.early_stop)},
    }
    if history.stop_reason == "interrupted":
        run_info["resume_command"] = resume_command(overrides, run_dir, launch)
    # the data's shape beside the config: a suggested change must fit both (no image augmentation for a table)
    settings = {**settings, "data": {"in_shape": list(splits.in_shape)}}
    diagnosis = diagnose(history, evaluation, cfg.report, overrides, settings=settings, baselines=baselines,
                         class_names=splits.class_names,
                         resume=resume_command(overrides, run_dir) if history.stop_reason == "interrupted" else None)
    _relaunch(diagnosis, launch)
    run_info["launch"] = launch
    report = render(run_dir, run_info, history, evaluation, diagnosis, splits, cfg.report, baselines=baselines)
    ui.summary(report)
    return report


def _check_target_error(cfg: Any, task: str) -> None:
    """report.target_error is in the error's units, which the data decide: a fraction for classification (checked
    here, once the task is known), an RMSE in the target's units for regression (any value >= 0)."""
    target = cfg.report.target_error
    if task == "classification" and target is not None and target >= 1:
        raise DlrunError(f"report.target_error={target}: {cfg.dataset.name} is a classification task, whose error is "
                         "a fraction in [0, 1), e.g. report.target_error=0.02")


def rebuild_report(cfg: Any, run_dir: Path, overrides: list[str], ui: Any = None) -> dict:
    """Rebuild an existing run's report from its checkpoints, config and data, without training.

    The model gets the weights the original report used: best.pt when the run ended on its best epoch, else last.pt.
    """
    from dlrun import data, models
    from dlrun.engine import checkpoint, devices
    from dlrun.engine.loop import History

    run_dir = Path(run_dir)
    last_path = run_dir / "checkpoints" / "last.pt"
    if not last_path.is_file():
        raise DlrunError(f"{run_dir} has no checkpoints/last.pt: is it a dlrun run folder?")
    last = checkpoint.load(last_path)
    best_path = run_dir / "checkpoints" / "best.pt"
    best = checkpoint.load(best_path) if best_path.is_file() else None
    restored = best is not None and cfg.early_stop.restore_best  # as fit() does at the end
    _setup(cfg.trainer)
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    _check_target_error(cfg, splits.task)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    model.load_state_dict((best if restored else last)["model"])
    rt = devices.resolve(cfg.trainer.device, cfg.trainer.precision)
    history = History(rows=[dict(r) for r in last["history"]], best_epoch=best["epoch"] if restored else last["epoch"],
                      # a checkpoint written while the run went on (then killed: SIGKILL, a crash) did not end
                      stop_reason=last.get("stop_reason") or "interrupted", wall_seconds=last.get("wall_seconds", 0.0),
                      device=str(rt.device), precision=rt.precision,
                      dynamics=list((last.get("probe") or {}).get("rows", [])))  # the health findings' probes
    n_params = sum(p.numel() for p in model.parameters())
    return _report(cfg, _as_dict(cfg), run_dir, overrides, splits, model, history, n_params, ui or NullUI())


def run(cfg: Any, run_dir: Path, overrides: list[str], ui: Any = None, launch: str = "dlrun",
        sweep_dir: Optional[Path] = None, on_finished: Optional[Callable[[Optional[int]], None]] = None) -> RunResult:
    """Train and diagnose one configuration; write the run folder; return what the CLI needs. `launch` is how it
    was started ("dlrun", "dlrun --config-dir DIR", "torchrun --nproc-per-node=4 -m dlrun"): printed commands
    start with it. `on_finished(signal held so far, or None)` is called once a run that was not interrupted has its
    report complete (or is skipped as finished), while the report's signal hold is still on: cli.py takes the hold
    over there, so that no later signal is taken for an interruption."""
    import dlrun
    from dlrun import data, models
    from dlrun.engine import fit

    ui = ui or NullUI()
    run_dir = Path(run_dir)
    if cfg.trainer.resume == "auto":
        cfg, finished = _auto_resume(cfg, run_dir)
        if finished is not None:
            value = finished["run"].get("objective", {}).get("value")
            worst = float("-inf") if cfg.early_stop.mode == "max" else float("inf")
            if on_finished is not None:
                on_finished(None)
            return RunResult(report=finished, run_dir=run_dir, exit_code=0, skipped=True,
                             objective=worst if value is None else value)
    _setup(cfg.trainer)
    resume = _resume_state(cfg) if cfg.trainer.resume else None  # read before an overwrite clears the folder
    if getattr(cfg.trainer, "overwrite", False):
        _clear_run(run_dir)

    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    _check_target_error(cfg, splits.task)
    import torch

    torch.manual_seed(cfg.trainer.seed)  # the same initial weights whatever loading consumed
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %d parameters", cfg.model.family, n_params)

    config_dict = _as_dict(cfg)
    meta = {"config": config_dict, "overrides": list(overrides), "dlrun_version": dlrun.__version__,
            "norm_mean": splits.mean, "norm_std": splits.std, "in_shape": list(splits.in_shape),
            "task": splits.task, "class_names": list(splits.class_names),
            "target_mean": splits.target_mean, "target_scale": splits.target_scale}

    from dlrun.engine import devices

    rank, _ = devices.distributed_rank()
    if rank != 0:
        ui = NullUI()  # under torchrun only rank 0 draws, evaluates and writes the report
    from dataclasses import replace

    from dlrun import loggers

    tracking = loggers.start(cfg.logger, run_dir, config_dict, overrides, sweep_dir) if rank == 0 else loggers.Loggers()
    # a logger list without tensorboard (logger=[mlflow], logger=[]) writes no event files, as trainer.tensorboard=false
    trainer = cfg.trainer if cfg.logger.tensorboard is not None else replace(cfg.trainer, tensorboard=False)

    def on_epoch(row: dict, max_epochs: int) -> None:
        ui.on_epoch(row, max_epochs)
        tracking.on_epoch(row)

    ui.start(cfg.trainer.max_epochs, len(resume["history"]) if resume else 0)
    try:
        history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, trainer,
                      out_dir=run_dir, on_epoch=on_epoch, meta=meta, resume=resume,
                      loader=cfg.dataset.loader, num_workers=cfg.dataset.num_workers,
                      probe_every=cfg.report.probe_every)
    except BaseException as err:
        tracking.fail(err)
        raise
    finally:
        ui.stop()
        devices.teardown_distributed()

    from dlrun.engine.loop import catch_signals

    # a signal while the report is written is deferred until it is complete (a second one exits at once; every file
    # is written atomically, so what is on disk is whole either way)
    try:
        with catch_signals("finishing the report, then exiting") as late:
            late.signal = history.held  # one that came after the last batch is held like one during the report
            report = _report(cfg, config_dict, run_dir, overrides, splits, model, history, n_params, ui, launch) \
                if rank == 0 else {}
            if on_finished is not None and not history.signal:  # the run is complete: the caller holds signals
                on_finished(late.signal)  # from here (cli.py, until dlrun exits)
    except BaseException as err:
        tracking.fail(err)
        raise
    tracking.finish(report, run_dir)
    stopped_by = history.signal or late.signal
    exit_code = 128 + stopped_by if stopped_by else exit_status(report, cfg.report.fail_on)
    if history.signal:
        log.warning("run interrupted by %s: checkpoint and partial report written to %s; to continue: %s",
                    signal.Signals(history.signal).name, run_dir, resume_command(overrides, run_dir, launch))
    return RunResult(report=report, run_dir=run_dir, exit_code=exit_code, objective=objective(history, cfg.early_stop),
                     signal=stopped_by)


def exit_status(report: dict, fail_on: list[str]) -> int:
    """0 done, EXIT_DIVERGED for a run that diverged, EXIT_VERDICT when a verdict listed in report.fail_on fired."""
    from dlrun.errors import EXIT_DIVERGED, EXIT_VERDICT

    if not report:  # a torchrun rank other than 0 writes no report
        return 0
    if report["run"]["stop_reason"] in ("diverged", "divergence_threshold"):
        return EXIT_DIVERGED
    fired = [name for name in fail_on if report["diagnosis"].get(name, {}).get("detected")]
    return EXIT_VERDICT if fired else 0


def objective(history: Any, early_stop: Any) -> Optional[float]:
    """The monitored value of the weights the run ended with (history.best_epoch's: the best epoch's after
    early_stop.restore_best, the last one's without), for Hydra sweepers and the sweep summary, so that what they
    rank is the model the run returns and its report evaluates; the best recorded value (the smallest for min, the
    largest for max) when no epoch's weights are known; the worst possible value when nothing finite was recorded or
    the run diverged (a configuration that diverges is not one to pick, even if an epoch before looked good)."""
    import math

    import numpy as np

    column = history.column(early_stop.monitor) if history.rows else None
    if column is None or not len(column):
        return None
    maximise = early_stop.mode == "max"
    if not np.isfinite(column).any() or history.stop_reason in ("diverged", "divergence_threshold"):
        return float("-inf") if maximise else float("inf")
    if 1 <= history.best_epoch <= len(column) and math.isfinite(column[history.best_epoch - 1]):
        return float(column[history.best_epoch - 1])
    return float(np.nanmax(column) if maximise else np.nanmin(column))

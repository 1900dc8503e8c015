"""One run, as the data flow in STYLE.md: data -> model -> fit -> evaluate -> diagnose -> render.

Receives plain dataclasses (OmegaConf.to_object), so a test or a notebook calls run() without Hydra.
"""

from __future__ import annotations

import logging
import signal
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

# the groups whose values must match for a resume to continue the same training
RESUME_GROUPS = ("model", "dataset", "split", "shift", "reg", "optim", "sched")


@dataclass
class RunResult:
    report: dict  # the content of report.json
    run_dir: Path
    exit_code: int  # 0; 128 + signal number when interrupted
    objective: Optional[float]  # the best monitored value, for Hydra sweepers


class NullUI:
    """What run() calls on the terminal; cli.py passes a rich implementation (dlrun/console.py)."""

    def start(self, max_epochs: int, start_epoch: int) -> None: ...

    def on_epoch(self, row: dict, max_epochs: int) -> None: ...

    def stop(self) -> None: ...

    def summary(self, report: dict) -> None: ...


def _setup(trainer: Any) -> None:
    import torch

    if trainer.threads:
        torch.set_num_threads(trainer.threads)
    if trainer.deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
    torch.manual_seed(trainer.seed)


def _resume_state(cfg: Any) -> Optional[dict]:
    """Load trainer.resume's last.pt (+ best.pt) and check it continues this config."""
    from omegaconf import OmegaConf

    from dlrun.engine import checkpoint

    path = checkpoint.find(cfg.trainer.resume)
    state = checkpoint.load(path)
    saved = state.get("meta", {}).get("config", {})
    now = OmegaConf.to_container(OmegaConf.structured(cfg))
    for group in RESUME_GROUPS:
        if group in saved and saved[group] != now[group]:
            diffs = [f"{group}.{k}={saved[group][k]!r} (now {now[group].get(k)!r})" for k in saved[group]
                     if saved[group][k] != now[group].get(k)]
            original = " ".join(state["meta"].get("overrides", []))
            raise DlrunError(f"trainer.resume={cfg.trainer.resume}: the checkpoint was trained with "
                             f"{', '.join(diffs)}. Repeat the original overrides: "
                             f"dlrun {original} trainer.resume={cfg.trainer.resume}".replace("  ", " "))
    best = path.parent / "best.pt"
    if best.is_file():
        state["best_model"] = checkpoint.load(best)["model"]
    log.info("resuming from %s at epoch %d", path, state["epoch"])
    return state


def run(cfg: Any, run_dir: Path, overrides: list[str], ui: Any = None) -> RunResult:
    """Train and diagnose one configuration; write the run folder; return what the CLI needs."""
    from omegaconf import OmegaConf

    import dlrun
    from dlrun import data, models
    from dlrun.engine import evaluate, fit
    from dlrun.report import baselines_for, diagnose, render

    ui = ui or NullUI()
    run_dir = Path(run_dir)
    _setup(cfg.trainer)
    resume = _resume_state(cfg) if cfg.trainer.resume else None

    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    import torch

    torch.manual_seed(cfg.trainer.seed)  # the same initial weights whatever loading consumed
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    n_params = sum(p.numel() for p in model.parameters())
    log.info("model %s: %d parameters", cfg.model.family, n_params)

    config_dict = OmegaConf.to_container(OmegaConf.structured(cfg))
    meta = {"config": config_dict, "overrides": list(overrides), "dlrun_version": dlrun.__version__,
            "norm_mean": splits.mean, "norm_std": splits.std, "in_shape": list(splits.in_shape),
            "task": splits.task, "class_names": list(splits.class_names),
            "target_mean": splits.target_mean, "target_scale": splits.target_scale}

    ui.start(cfg.trainer.max_epochs, len(resume["history"]) if resume else 0)
    try:
        history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer,
                      out_dir=run_dir, on_epoch=ui.on_epoch, meta=meta, resume=resume)
    finally:
        ui.stop()

    evaluation = evaluate(model, splits, cfg.trainer)
    baselines = baselines_for(splits)
    run_info = {
        "overrides": list(overrides), "seed": cfg.trainer.seed, "device": history.device,
        "precision": history.precision, "torch_version": torch.__version__, "dlrun_version": dlrun.__version__,
        "epochs_run": history.epochs_run, "max_epochs": cfg.trainer.max_epochs, "best_epoch": history.best_epoch,
        "stop_reason": history.stop_reason, "wall_seconds": history.wall_seconds, "parameters": n_params,
        "model": cfg.model.family, "dataset": cfg.dataset.name, "task": splits.task,
        "shift": splits.shift, "interrupted": history.stop_reason == "interrupted",
    }
    diagnosis = diagnose(history, evaluation, cfg.report, overrides, settings=config_dict, baselines=baselines,
                         class_names=splits.class_names)
    report = render(run_dir, run_info, history, evaluation, diagnosis, splits, cfg.report, baselines=baselines)
    ui.summary(report)

    exit_code = 128 + history.signal if history.signal else 0
    if history.signal:
        log.warning("run interrupted by %s: checkpoint and partial report written to %s",
                    signal.Signals(history.signal).name, run_dir)
    objective = None
    column = history.column(cfg.early_stop.monitor) if history.rows else None
    if column is not None and len(column):
        import numpy as np

        objective = float(np.nanmin(column)) if np.isfinite(column).any() else float("inf")
    return RunResult(report=report, run_dir=run_dir, exit_code=exit_code, objective=objective)

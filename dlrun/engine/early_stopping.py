"""Early stopping on a monitored metric (after Keras' EarlyStopping: patience, min_delta, mode, baseline,
start_from_epoch, restore_best). Pure Python over floats, so it is tested without training anything."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Optional


@dataclass
class EarlyStopping:
    monitor: str = "val_loss"
    mode: str = "auto"  # auto | min | max; auto means min for losses and errors
    patience: int = 10
    min_delta: float = 0.0
    baseline: Optional[float] = None
    start_from_epoch: int = 0
    check_finite: bool = True
    enabled: bool = True
    stopping_threshold: Optional[float] = None  # stop as soon as the monitor is better than this (Lightning)
    divergence_threshold: Optional[float] = None  # stop as soon as the monitor is worse than this (Lightning)
    # state
    best: Optional[float] = None  # the best finite value seen, baseline or not
    best_epoch: int = 0  # 1-based; 0 until a finite value has been seen
    wait: int = 0
    stop_reason: Optional[str] = None  # patience | baseline | threshold | diverged

    @classmethod
    def from_config(cls, cfg) -> "EarlyStopping":
        return cls(monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience, min_delta=cfg.min_delta,
                   baseline=cfg.baseline, start_from_epoch=cfg.start_from_epoch, check_finite=cfg.check_finite,
                   enabled=cfg.enabled, stopping_threshold=getattr(cfg, "stopping_threshold", None),
                   divergence_threshold=getattr(cfg, "divergence_threshold", None))

    @property
    def sign(self) -> float:
        """+1 when smaller is better."""
        if self.mode == "max":
            return -1.0
        return 1.0  # min, or auto: every metric dlrun monitors is a loss or an error

    def better(self, a: float, b: float) -> bool:
        """a is better than b (strictly)."""
        return self.sign * (b - a) > 0

    def step(self, epoch: int, value: float) -> bool:
        """Record `value` for `epoch` (1-based); True when training should stop. Updates best/best_epoch.

        The best epoch is tracked whatever the baseline, so a run whose baseline is never beaten still ends on its
        best weights; the baseline only decides whether an improvement resets the patience count."""
        finite = math.isfinite(value)
        if self.check_finite and not finite:
            self.stop_reason = "diverged"
            return True
        improved = finite and (self.best is None or self.sign * (self.best - value) > self.min_delta)
        if improved:
            self.best, self.best_epoch = value, epoch
        if self.enabled and finite:
            if self.stopping_threshold is not None and self.better(value, self.stopping_threshold):
                self.stop_reason = "threshold"
                return True
            if self.divergence_threshold is not None and self.better(self.divergence_threshold, value):
                self.stop_reason = "divergence_threshold"  # finite: the user's limit, not a NaN
                return True
        beaten = self.baseline is None or (self.best is not None
                                           and self.sign * (self.baseline - self.best) > self.min_delta)
        if improved and beaten:
            self.wait = 0
            return False
        if epoch <= self.start_from_epoch:
            return False  # warm-up: improvements are recorded, patience is not counted yet
        self.wait += 1
        if self.enabled and self.wait >= self.patience:
            self.stop_reason = "patience" if beaten else "baseline"
            return True
        return False

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("best", "best_epoch", "wait", "stop_reason")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

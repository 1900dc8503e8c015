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
    # state
    best: Optional[float] = None
    best_epoch: int = 0  # 1-based; 0 until a finite value has been seen
    wait: int = 0
    stop_reason: Optional[str] = None  # patience | baseline | diverged

    @classmethod
    def from_config(cls, cfg) -> "EarlyStopping":
        return cls(monitor=cfg.monitor, mode=cfg.mode, patience=cfg.patience, min_delta=cfg.min_delta,
                   baseline=cfg.baseline, start_from_epoch=cfg.start_from_epoch, check_finite=cfg.check_finite,
                   enabled=cfg.enabled)

    @property
    def sign(self) -> float:
        """+1 when smaller is better."""
        if self.mode == "max":
            return -1.0
        return 1.0  # min, or auto: every metric dlrun monitors is a loss or an error

    def step(self, epoch: int, value: float) -> bool:
        """Record `value` for `epoch` (1-based); True when training should stop. Updates best/best_epoch."""
        finite = math.isfinite(value)
        if self.check_finite and not finite:
            self.stop_reason = "diverged"
            return True
        reference = self.best if self.best is not None else self.baseline
        if finite and (reference is None or self.sign * (reference - value) > self.min_delta):
            self.best, self.best_epoch, self.wait = value, epoch, 0
            return False
        if epoch <= self.start_from_epoch:
            return False  # warm-up: improvements are recorded, patience is not counted yet
        self.wait += 1
        if self.enabled and self.wait >= self.patience:
            # best is None only when a baseline was given and never beaten
            self.stop_reason = "baseline" if self.best is None else "patience"
            return True
        return False

    def state_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k in ("best", "best_epoch", "wait", "stop_reason")}

    def load_state_dict(self, state: dict) -> None:
        for k, v in state.items():
            setattr(self, k, v)

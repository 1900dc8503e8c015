"""Early stopping on hand-made metric sequences: each rule stops at the epoch it should."""

from __future__ import annotations

import math

from dlrun.engine.early_stopping import EarlyStopping


def _run(values, **kw):
    es = EarlyStopping(**kw)
    for epoch, v in enumerate(values, start=1):
        if es.step(epoch, v):
            return epoch, es
    return None, es


def test_patience_stops_after_that_many_epochs_without_improvement():
    stopped, es = _run([1.0, 0.8, 0.9, 0.85, 0.95, 0.7], patience=3)
    assert stopped == 5 and es.best == 0.8 and es.best_epoch == 2 and es.stop_reason == "patience"


def test_patience_zero_stops_at_the_first_non_improvement():
    stopped, _ = _run([1.0, 0.9, 0.95], patience=0)
    assert stopped == 3


def test_min_delta_ignores_tiny_improvements():
    stopped, es = _run([1.0, 0.999, 0.998, 0.997], patience=2, min_delta=0.01)
    assert stopped == 3 and es.best_epoch == 1


def test_mode_max_for_a_metric_that_grows():
    stopped, es = _run([0.5, 0.7, 0.6, 0.65], patience=2, mode="max")
    assert stopped == 4 and es.best == 0.7 and es.best_epoch == 2


def test_baseline_stops_when_never_beaten():
    stopped, es = _run([0.9, 0.8, 0.7], patience=2, baseline=0.5)
    # the best epoch is recorded all the same, so the run still ends on its best weights
    assert stopped == 2 and es.stop_reason == "baseline" and (es.best, es.best_epoch) == (0.8, 2)


def test_baseline_beaten_counts_as_improvement():
    stopped, es = _run([0.9, 0.4, 0.45, 0.46], patience=2, baseline=0.5)
    assert stopped == 4 and es.best_epoch == 2 and es.stop_reason == "patience"


def test_start_from_epoch_delays_patience():
    stopped, _ = _run([1.0, 1.1, 1.2, 1.3, 1.4, 1.5], patience=1, start_from_epoch=3)
    assert stopped == 4


def test_check_finite_stops_on_nan():
    stopped, es = _run([1.0, math.nan, 0.5], patience=10)
    assert stopped == 2 and es.stop_reason == "diverged"
    stopped, _ = _run([1.0, math.nan, 0.5], patience=10, check_finite=False)
    assert stopped is None


def test_disabled_tracks_best_but_never_stops():
    stopped, es = _run([1.0, 0.5, 0.9, 0.9, 0.9], patience=1, enabled=False)
    assert stopped is None and es.best_epoch == 2


def test_state_round_trip():
    _, es = _run([1.0, 0.8, 0.9], patience=5)
    other = EarlyStopping(patience=5)
    other.load_state_dict(es.state_dict())
    assert (other.best, other.best_epoch, other.wait) == (0.8, 2, 1)


def test_stopping_threshold_stops_as_soon_as_the_monitor_is_better():
    stopped, es = _run([1.0, 0.6, 0.3, 0.2], patience=10, stopping_threshold=0.5)
    assert stopped == 3 and es.stop_reason == "threshold" and es.best_epoch == 3
    stopped, es = _run([0.5, 0.7, 0.9], patience=10, mode="max", stopping_threshold=0.8)
    assert stopped == 3 and es.stop_reason == "threshold"
    stopped, _ = _run([1.0, 0.5, 0.4], patience=10, stopping_threshold=0.5)  # equal is not better (Lightning: <)
    assert stopped == 3


def test_divergence_threshold_stops_as_soon_as_the_monitor_is_worse():
    stopped, es = _run([1.0, 0.6, 2.5, 0.2], patience=10, divergence_threshold=2.0)
    assert stopped == 3 and es.stop_reason == "divergence_threshold" and es.best_epoch == 2  # finite: not a NaN


def test_thresholds_are_part_of_early_stopping_and_off_when_it_is_disabled():
    stopped, es = _run([1.0, 0.3, 5.0], patience=10, enabled=False, stopping_threshold=0.5, divergence_threshold=2)
    assert stopped is None and es.best_epoch == 2


# ----------------------------------------------------------------------------------------------------------------------
# in the training loop: which weights the run ends on


def _fit(**groups):
    import torch

    from dlrun import data, models
    from dlrun.engine import fit
    from tests.conftest import make_config

    cfg = make_config(**groups)
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    torch.manual_seed(0)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer)
    return model, history


def _val_losses(history):
    return [r["val_loss"] for r in history.rows]


def test_restore_best_holds_without_early_stopping():
    # a learning rate that makes val_loss bounce: the best epoch is not the last one
    model, history = _fit(trainer={"max_epochs": 8}, optim={"lr": 0.05}, early_stop={"enabled": False})
    losses = _val_losses(history)
    best = losses.index(min(losses)) + 1
    assert best < len(losses), "the planted run should not be best on its last epoch"
    assert history.epochs_run == 8 and history.best_epoch == best


def test_a_baseline_never_beaten_still_ends_on_the_best_weights():
    model, history = _fit(trainer={"max_epochs": 8}, optim={"lr": 0.05},
                          early_stop={"baseline": 1e-6, "patience": 4})
    losses = _val_losses(history)
    assert history.stop_reason == "baseline" and history.epochs_run == 4
    assert history.best_epoch == losses.index(min(losses)) + 1 >= 1


def test_stopping_threshold_in_the_loop():
    _, history = _fit(trainer={"max_epochs": 30}, early_stop={"stopping_threshold": 0.5, "patience": 100})
    assert history.stop_reason == "threshold" and history.rows[-1]["val_loss"] < 0.5
    assert all(r["val_loss"] >= 0.5 for r in history.rows[:-1])


def test_mode_max_on_a_loss_is_a_user_error():
    import pytest

    from dlrun.config import validate
    from dlrun.errors import DlrunError
    from tests.conftest import make_config

    with pytest.raises(DlrunError, match=r"early_stop.mode=max with early_stop.monitor=val_loss.*auto or min"):
        validate(make_config(early_stop={"mode": "max"}))


def test_the_sweep_objective_follows_the_mode():
    from types import SimpleNamespace

    from dlrun.engine.loop import History
    from dlrun.pipeline import objective

    rows = [{"val_loss": v} for v in (0.5, 0.2, 0.9)]

    def history(best: int) -> History:
        return History(rows=rows, best_epoch=best, stop_reason="max_epochs", wall_seconds=0, device="cpu",
                       precision="32")

    assert objective(history(2), SimpleNamespace(monitor="val_loss", mode="auto")) == 0.2
    assert objective(history(3), SimpleNamespace(monitor="val_loss", mode="max")) == 0.9
    # the value of the weights the run ended with (restore_best=false: the last epoch's), not the best recorded:
    # what a sweeper optimises is then the model the run returns
    assert objective(history(3), SimpleNamespace(monitor="val_loss", mode="auto")) == 0.9
    assert objective(history(0), SimpleNamespace(monitor="val_loss", mode="auto")) == 0.2  # no epoch's weights known
    nan = History(rows=[{"val_loss": math.nan}], best_epoch=0, stop_reason="diverged", wall_seconds=0, device="cpu",
                  precision="32")
    assert objective(nan, SimpleNamespace(monitor="val_loss", mode="min")) == math.inf

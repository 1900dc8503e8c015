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
    assert stopped == 2 and es.stop_reason == "baseline" and es.best is None


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

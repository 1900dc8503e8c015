"""diagnose() on hand-made evaluations and histories: no training, known answers."""

from __future__ import annotations

import numpy as np
import pytest

from dlrun.config import ReportConfig
from dlrun.engine.loop import Evaluation, History, SplitEvaluation
from dlrun.report import diagnose, next_command
from dlrun.report.diagnosis import decompose, _figures

K = 4


def _split(n: int, error: float, seed: int, probs_shift: float = 0.0, feature_shift: float = 0.0) -> SplitEvaluation:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, K, n)
    wrong = rng.random(n) < error
    pred = np.where(wrong, (y + 1) % K, y)
    logits = rng.normal(0, 1, (n, K)) + 3 * np.eye(K)[pred] + probs_shift * np.eye(K)[0]
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    features = rng.normal(feature_shift, 1, (min(n, 300), 8))
    return SplitEvaluation(loss=float(error), error=float(wrong.mean()), n=n, y_true=y, y_pred=pred,
                           sample_loss=wrong.astype(float), probs=probs, features=features)


def _evaluation(train=0.01, val=0.02, test=0.02, n=(2000, 600, 600), dev=None, **shift) -> Evaluation:
    splits = {"train": _split(n[0], train, 0), "val": _split(n[1], val, 1), "test": _split(n[2], test, 2, **shift)}
    if dev is not None:
        splits["train_dev"] = _split(400, dev, 3)
    return Evaluation(task="classification", splits=splits)


def _history(val_loss=None, train_loss=None, stop="patience", best=None) -> History:
    val_loss = val_loss if val_loss is not None else list(np.linspace(1.0, 0.1, 20))
    train_loss = train_loss if train_loss is not None else list(np.linspace(1.2, 0.05, len(val_loss)))
    rows = [{"epoch": i + 1, "train_loss": t, "val_loss": v, "train_error": 0.0, "val_error": 0.0, "lr": 1e-3,
             "epoch_seconds": 0.01} for i, (t, v) in enumerate(zip(train_loss, val_loss))]
    best = best or int(np.argmin(val_loss)) + 1
    return History(rows=rows, best_epoch=best, stop_reason=stop, wall_seconds=1.0, device="cpu", precision="32")


SETTINGS = {"model": {"family": "mlp", "hidden": [64]}, "reg": {"dropout": 0.0, "weight_decay": 0.0, "l1": 0.0},
            "optim": {"lr": 1e-3}, "trainer": {"max_epochs": 20}}
BASE = {"chance_error": 0.75, "simple_train_error": 0.05, "simple_val_error": 0.08, "target_scale": 1.0}
CLASSES = [str(i) for i in range(K)]


def _diagnose(evaluation, history=None, baselines=BASE, **report):
    return diagnose(history or _history(), evaluation, ReportConfig(**report), ["model.hidden=[64]"], SETTINGS,
                    baselines=baselines, class_names=CLASSES)


def test_healthy_figures_raise_nothing():
    d = _diagnose(_evaluation())
    assert not any(f.detected for f in d.findings().values())


def test_overfitting_needs_size_and_significance():
    d = _diagnose(_evaluation(train=0.0, val=0.15))
    assert d.overfitting.detected and d.overfitting.severity in ("mild", "severe")
    assert "reg.weight_decay=0.0001" in d.overfitting.actions[0].command
    # the same gap on 40 validation samples is not significant enough... and a small gap never is
    assert not _diagnose(_evaluation(train=0.0, val=0.03)).overfitting.detected


def test_overfitting_uses_train_dev_when_present():
    d = _diagnose(_evaluation(train=0.0, val=0.02, dev=0.2))
    assert d.overfitting.detected and d.overfitting.stats["held_out"] == "train_dev"
    assert d.decomposition["variance"] == pytest.approx(d.decomposition["train_dev_error"])
    assert d.decomposition["data_mismatch"] == pytest.approx(d.decomposition["val_error"] - d.decomposition["train_dev_error"])


def test_u_curve_is_reported_as_evidence():
    val_loss = list(np.linspace(1.0, 0.2, 8)) + list(np.linspace(0.25, 0.6, 8))
    d = _diagnose(_evaluation(train=0.0, val=0.15), history=_history(val_loss=val_loss))
    assert any("U-curve" in e for e in d.overfitting.evidence)


def test_underfitting_against_the_target_error_and_the_causes():
    flat = [1.0] * 10
    d = _diagnose(_evaluation(train=0.3, val=0.31, test=0.31), history=_history(train_loss=flat, val_loss=flat,
                                                                                stop="max_epochs"))
    assert d.underfitting.detected
    assert any("learning rate is too small" in e for e in d.underfitting.evidence)
    assert d.underfitting.actions[0].command == "dlrun 'model.hidden=[64]' optim.lr=0.01"
    falling = list(np.linspace(2.0, 1.0, 10))
    d = _diagnose(_evaluation(train=0.3, val=0.31, test=0.31), history=_history(train_loss=falling, val_loss=falling,
                                                                                stop="max_epochs"))
    assert d.underfitting.actions[0].text == "train longer"
    # a target error above the training error: nothing avoidable
    d = _diagnose(_evaluation(train=0.3, val=0.31, test=0.31), target_error=0.29)
    assert not d.underfitting.detected and d.decomposition["avoidable_bias"] == pytest.approx(0.3 - 0.29, abs=0.03)


def test_divergence_is_severe_underfitting_with_a_smaller_learning_rate():
    history = _history(train_loss=[1.0, float("nan")], val_loss=[1.0, float("nan")], stop="diverged", best=1)
    d = _diagnose(_evaluation(), history=history)
    assert d.underfitting.detected and d.underfitting.severity == "severe"
    assert d.underfitting.actions[0].command.endswith("optim.lr=0.0001")


def test_shift_from_the_error_gap_and_from_label_free_tests():
    d = _diagnose(_evaluation(test=0.25, probs_shift=2.0, feature_shift=1.0))
    assert d.distribution_shift.detected and d.distribution_shift.severity == "severe"
    assert {"ks_softmax", "mmd_features"} <= set(d.distribution_shift.stats["tests_fired"])
    # inputs unlike validation but no error degradation: mild
    d = _diagnose(_evaluation(feature_shift=1.0))
    assert d.distribution_shift.detected and d.distribution_shift.severity == "mild"
    # worse test error with no label-free evidence: the validation split may have been overfit
    d = _diagnose(_evaluation(test=0.25))
    assert d.distribution_shift.detected
    assert any("validation split may have been overfit" in e for e in d.distribution_shift.evidence)


def test_decomposition_terms():
    fig = _figures(_evaluation(train=0.05, val=0.1, test=0.2), 1.0)
    dec = decompose(fig, target_error=0.01)
    assert dec["avoidable_bias"] == pytest.approx(dec["train_error"] - 0.01)
    assert dec["variance"] == pytest.approx(dec["val_error"] - dec["train_error"])
    assert dec["val_to_test"] == pytest.approx(dec["test_error"] - dec["val_error"])
    assert dec["data_mismatch"] is None


def test_next_command_replaces_keys_and_quotes_for_the_shell():
    assert next_command(["model=mlp", "reg.dropout=0.1", "trainer.resume=/x"], {"reg.dropout": 0.3}) == \
        "dlrun model=mlp reg.dropout=0.3"
    assert next_command([], {"model.hidden": [128, 64], "optim.lr": 1e-4}) == \
        "dlrun 'model.hidden=[128,64]' optim.lr=0.0001"

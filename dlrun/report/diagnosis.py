"""The diagnosis: underfitting, overfitting, distribution shift, from numbers only (pure functions).

Backbone: Andrew Ng's error decomposition ("Machine Learning Yearning"; "Nuts and bolts of applying deep
learning", 2016) over the seed method's splits:

    target error  --avoidable bias-->  train  --variance-->  train-dev  --data mismatch-->  val  -->  test
                                                (val when there is no train-dev split)

and the seed method's iteration (shared/seeds/002): bad on train -> learning rate, less regularisation,
more capacity, or no signal in the data; good on train, bad on validation -> more regularisation, then
less capacity, then more data; good on train and validation, bad on test -> test comes from another
distribution (or validation was overfit by model selection): reweight, review the data, per-class errors.

Each finding needs both a practical size (`report.tolerance`, in error-rate units; for regression in units
of the training targets' std, so 1.0 is the mean predictor) and statistical significance (`report.alpha`)
given the split sizes, so a small validation set does not cry wolf.
"""

from __future__ import annotations

import math
import shlex
from dataclasses import dataclass, field
from typing import Any, Optional

import numpy as np

from dlrun.report import stats

SEVERITIES = ("none", "mild", "severe")


@dataclass
class Action:
    text: str
    command: str  # a full `dlrun ...` line for the next run


@dataclass
class Finding:
    detected: bool = False
    severity: str = "none"  # none | mild | severe
    evidence: list[str] = field(default_factory=list)
    actions: list[Action] = field(default_factory=list)
    stats: dict[str, Any] = field(default_factory=dict)  # the numbers behind the verdict, for report.json


@dataclass
class Diagnosis:
    underfitting: Finding
    overfitting: Finding
    distribution_shift: Finding
    decomposition: dict[str, Optional[float]]
    notes: list[str] = field(default_factory=list)
    shift_tests: dict[str, dict] = field(default_factory=dict)  # label-free val-vs-test tests (report.evidence)
    per_class: Optional[dict] = None  # per-class errors and shares (classification)
    curves: dict[str, Any] = field(default_factory=dict)  # learning-curve shapes
    intervals: dict[str, list[float]] = field(default_factory=dict)  # split -> 95% interval of its error

    def findings(self) -> dict[str, Finding]:
        return {"underfitting": self.underfitting, "overfitting": self.overfitting,
                "distribution_shift": self.distribution_shift}


# ----------------------------------------------------------------------------------------------------------------------
# the next command: the run's own overrides with the suggested change


def next_command(overrides: list[str], changes: dict[str, Any]) -> str:
    """`dlrun` + this run's overrides, minus resume and any key in `changes`, plus `changes`."""
    keep = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key in changes or key == "trainer.resume":
            continue
        keep.append(item)
    for key, value in changes.items():
        if isinstance(value, (list, tuple)):
            value = "[" + ",".join(str(v) for v in value) + "]"
        elif isinstance(value, float):
            value = f"{value:g}"
        keep.append(f"{key}={value}")
    return " ".join(["dlrun"] + [shlex.quote(item) for item in keep])


def _get(settings: dict, dotted: str, default: Any = None) -> Any:
    node: Any = settings
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return default
        node = node[part]
    return node


def _bigger_model(settings: dict) -> dict[str, Any]:
    """The override that doubles the model's capacity, for whatever family it is."""
    model = settings.get("model", {})
    if "hidden" in model:
        hidden = [2 * h for h in model["hidden"]]
        return {"model.hidden": hidden + hidden[-1:] if len(hidden) < 3 else hidden}  # wider, and deeper up to 3
    if "hidden_size" in model:
        return {"model.hidden_size": 2 * model["hidden_size"]}
    if "width" in model:
        return {"model.width": 2 * model["width"]}
    return {"trainer.max_epochs": 2 * _get(settings, "trainer.max_epochs", 50)}


def _smaller_model(settings: dict) -> dict[str, Any]:
    model = settings.get("model", {})
    if "hidden" in model:
        return {"model.hidden": [max(1, h // 2) for h in model["hidden"]]}
    if "hidden_size" in model:
        return {"model.hidden_size": max(1, model["hidden_size"] // 2)}
    if "width" in model:
        return {"model.width": max(1, model["width"] // 2)}
    return {}


# ----------------------------------------------------------------------------------------------------------------------
# figures


@dataclass
class _Figure:
    """One split's error with its interval; for regression `norm` is the error over the targets' std."""

    error: float
    n: int
    low: float
    high: float
    norm: float


def _figures(evaluation: Any, target_scale: float) -> dict[str, _Figure]:
    out = {}
    for name, s in evaluation.splits.items():
        if evaluation.task == "classification":
            low, high = stats.error_interval(s.errors, s.n)
            out[name] = _Figure(s.error, s.n, low, high, s.error)
        else:
            sq = (np.asarray(s.y_pred, dtype=np.float64) - np.asarray(s.y_true, dtype=np.float64)) ** 2
            low, high = stats.mean_interval(sq)
            low, high = math.sqrt(max(low, 0.0)), math.sqrt(max(high, 0.0))
            out[name] = _Figure(s.error, s.n, low, high, s.error / target_scale)
    return out


def _gap(evaluation: Any, a: str, b: str) -> stats.TestResult:
    """One-sided test that split b's error exceeds split a's."""
    sa, sb = evaluation.splits[a], evaluation.splits[b]
    if evaluation.task == "classification":
        return stats.gap_test(sa.errors, sa.n, sb.errors, sb.n)
    ea = (np.asarray(sa.y_pred, float) - np.asarray(sa.y_true, float)) ** 2
    eb = (np.asarray(sb.y_pred, float) - np.asarray(sb.y_true, float)) ** 2
    return stats.mean_gap_test(ea, eb)


def _pct(x: Optional[float], task: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if task == "classification" else f"{x:.4g}"


def decompose(fig: dict[str, _Figure], target_error: Optional[float]) -> dict[str, Optional[float]]:
    """Ng's decomposition: each term is the difference between two adjacent error levels."""
    train = fig["train"].error
    dev = fig["train_dev"].error if "train_dev" in fig else None
    val, test = fig["val"].error, fig["test"].error
    return {
        "target_error": target_error,
        "train_error": train,
        "train_dev_error": dev,
        "val_error": val,
        "test_error": test,
        "avoidable_bias": None if target_error is None else train - target_error,
        "variance": (dev if dev is not None else val) - train,
        "data_mismatch": None if dev is None else val - dev,
        "val_to_test": test - val,
    }


def _severity(size: float, tolerance: float) -> str:
    return "severe" if size > 3 * tolerance else "mild"


# ----------------------------------------------------------------------------------------------------------------------


def diagnose(history: Any, evaluation: Any, report_cfg: Any, overrides: list[str], settings: dict,
             baselines: Optional[dict] = None, class_names: Optional[list[str]] = None) -> Diagnosis:
    """Decide the three findings from the history (per-epoch curves) and the final evaluation of each split.

    `baselines`: chance_error, simple_train_error, target_scale (see report.baselines).
    """
    from dlrun.report import evidence

    baselines = baselines or {}
    task = evaluation.task
    target_scale = float(baselines.get("target_scale", 1.0))
    tol, alpha = report_cfg.tolerance, report_cfg.alpha
    fig = _figures(evaluation, target_scale)
    decomposition = decompose(fig, report_cfg.target_error)
    notes: list[str] = []
    curves = evidence.curves(history)
    num_classes = len(class_names) if class_names else 0
    tests = evidence.shift_tests(evaluation.splits["val"], evaluation.splits["test"], task, num_classes, alpha)
    table = evidence.per_class(evaluation, class_names) if class_names else None

    under = _underfitting(fig, history, curves, task, tol, report_cfg.target_error, baselines, overrides, settings)
    over = _overfitting(fig, evaluation, history, curves, task, tol, alpha, overrides, settings)
    shift = _shift(fig, evaluation, task, tol, alpha, overrides, tests, table)
    if history.stop_reason == "interrupted":
        notes.append("the run was interrupted: the figures describe a partial training")
    return Diagnosis(underfitting=under, overfitting=over, distribution_shift=shift, decomposition=decomposition,
                     notes=notes, shift_tests=tests, per_class=table, curves=curves,
                     intervals={name: [f.low, f.high] for name, f in fig.items()})


def _tolerance_in_units(tol: float, task: str, scale: float) -> float:
    return tol * scale if task == "regression" else tol


def _underfitting(fig, history, curves, task, tol, target_error, baselines, overrides, settings) -> Finding:
    f = Finding()
    train = fig["train"]
    chance = baselines.get("chance_error")
    simple = baselines.get("simple_train_error")
    scale = float(baselines.get("target_scale", 1.0))
    tol_units = _tolerance_in_units(tol, task, scale)
    # what is achievable on the training data: the user's target, else what a linear model reaches, else 0
    if target_error is not None:
        reference, ref_name = target_error, "the target error (report.target_error)"
    elif simple is not None and math.isfinite(simple):
        reference, ref_name = simple, "a linear model's training error"
    else:
        reference, ref_name = 0.0, "zero"
    val = fig["val"]
    simple_val = baselines.get("simple_val_error")
    # no signal: neither the network nor a linear model beats chance on held-out data, whatever the training error
    no_signal = (chance is not None and simple_val is not None and target_error is None
                 and val.high >= chance and simple_val >= chance - tol_units)
    excess_low = train.low - reference  # judged at the favourable end of the interval
    excess = train.error - reference
    trend = curves["train_trend"]
    f.stats = {"train_error": train.error, "train_error_interval": [train.low, train.high], "reference": reference,
               "reference_name": ref_name, "excess": excess, "chance_error": chance, "simple_train_error": simple,
               "train_trend": trend, "simple_val_error": simple_val, "no_signal": no_signal}
    lr = _get(settings, "optim.lr", 1e-3)
    max_epochs = _get(settings, "trainer.max_epochs", 50)
    lower_lr = Action("divide the learning rate by 10", next_command(overrides, {"optim.lr": lr / 10}))
    if history.stop_reason == "diverged" or not math.isfinite(train.error):
        f.detected, f.severity = True, "severe"
        f.evidence.append("the training loss became NaN or infinite: the run diverged (learning rate too big)")
        f.actions.append(lower_lr)
        return f
    if no_signal:
        f.detected, f.severity = True, "severe"
        f.evidence.append(f"validation error {_pct(val.error, task)} (95% interval {_pct(val.low, task)}-"
                          f"{_pct(val.high, task)}) and a linear model's {_pct(simple_val, task)} are no better "
                          f"than chance ({_pct(chance, task)}): the inputs carry no usable relation to the outputs")
        if train.error < chance - tol_units:
            f.evidence.append(f"the training error {_pct(train.error, task)} is below chance only by memorising")
        f.actions.append(Action("check the data and the labels: are inputs and labels aligned (a shuffle that "
                                "separated them, a wrong target column)? is the task learnable from these inputs?",
                                next_command(overrides, {"split.train_dev": 0.1})))
        return f
    if not excess_low > tol_units:
        return f
    f.detected = True
    near_chance = chance is not None and train.error >= chance - tol_units
    f.severity = "severe" if near_chance or excess > 3 * tol_units else "mild"
    f.evidence.append(f"training error {_pct(train.error, task)} (95% interval {_pct(train.low, task)}-"
                      f"{_pct(train.high, task)}) is above {ref_name} ({_pct(reference, task)}) by more than the "
                      f"tolerance {_pct(tol_units, task)}")
    if chance is not None:
        f.evidence.append(f"chance level (always the majority class / the mean) is {_pct(chance, task)}")
    reg = settings.get("reg", {})
    regularised = reg.get("weight_decay", 0) > 0 or reg.get("dropout", 0) > 0 or reg.get("l1", 0) > 0
    less_reg = Action("less regularisation (weight decay, dropout, L1)", next_command(
        overrides, {"reg.weight_decay": reg.get("weight_decay", 0) / 100, "reg.dropout": 0.0,
                    "reg.l1": reg.get("l1", 0) / 100}))
    raise_lr = Action("raise the learning rate", next_command(overrides, {"optim.lr": lr * 10}))
    longer = Action("train longer", next_command(overrides, {"trainer.max_epochs": 2 * max_epochs}))
    bigger = Action("a bigger model", next_command(overrides, _bigger_model(settings)))

    if trend in ("oscillating", "diverged"):
        f.evidence.append(f"the training loss is {trend}: the learning rate is likely too big")
        f.actions += [lower_lr, less_reg] if regularised else [lower_lr]
    elif trend == "falling":
        f.evidence.append("the training loss was still falling at the last epoch: training stopped too early")
        f.actions += [longer, raise_lr] + ([less_reg] if regularised else [])
    elif trend == "flat":
        f.evidence.append("the training loss barely moved from the first epoch: the learning rate is too small"
                          + (" or the regularisation too strong" if regularised else ""))
        f.actions += ([less_reg, raise_lr] if regularised else [raise_lr]) + [bigger]
    else:  # converged, high
        f.evidence.append("the training loss converged at a high value: too little capacity"
                          + (" or too much regularisation" if regularised else ""))
        f.actions += ([less_reg] if regularised else []) + [bigger, raise_lr]
    return f


def _overfitting(fig, evaluation, history, curves, task, tol, alpha, overrides, settings) -> Finding:
    f = Finding()
    held_out = "train_dev" if "train_dev" in fig else "val"
    train, other = fig["train"], fig[held_out]
    gap = other.norm - train.norm
    test = _gap(evaluation, "train", held_out)
    u = curves.get("u_curve") or {}
    f.stats = {"held_out": held_out, "gap": other.error - train.error, "p_value": test.p_value,
               "best_epoch": history.best_epoch, "epochs_run": history.epochs_run,
               "val_loss_rise": u.get("relative_rise"), "gap_growing": u.get("gap_growing")}
    if not (gap > tol and test.p_value < alpha):
        return f
    f.detected, f.severity = True, _severity(gap, tol)
    f.evidence.append(f"{held_out} error {_pct(other.error, task)} vs training error {_pct(train.error, task)}: "
                      f"a gap of {_pct(other.error - train.error, task)} (one-sided p = {test.p_value:.2g})")
    if u and u.get("epochs_after_best", 0) >= 3 and (u.get("relative_rise") or 0) > 0.05:
        f.evidence.append(f"validation loss was lowest at epoch {u['best_epoch']} and rose by "
                          f"{100 * u['relative_rise']:.0f}% over the next {u['epochs_after_best']} epochs "
                          "(the U-curve" + (": early stopping hid part of it)" if history.stop_reason == "patience"
                                            else ")"))
    if u and u.get("gap_growing"):
        f.evidence.append("the gap between validation and training loss grew after the best epoch")
    reg = settings.get("reg", {})
    wd = reg.get("weight_decay", 0.0)
    dropout = reg.get("dropout", 0.0)
    f.actions.append(Action("more regularisation: weight decay and dropout", next_command(
        overrides, {"reg.weight_decay": max(1e-4, wd * 10), "reg.dropout": min(0.5, round(dropout + 0.2, 2))})))
    f.actions.append(Action("data augmentation / noise injection", next_command(
        overrides, {"reg.augment.noise": 0.1})))
    smaller = _smaller_model(settings)
    if smaller:
        f.actions.append(Action("less capacity", next_command(overrides, smaller)))
    f.actions.append(Action("more data: a larger training split", next_command(
        overrides, {"split.train": 0.8, "split.val": 0.1, "split.test": 0.1})))
    return f


def _shift(fig, evaluation, task, tol, alpha, overrides, tests, table) -> Finding:
    """Test worse than validation (labels), or test inputs unlike validation inputs (no labels needed).

    The label-free tests are Bonferroni-corrected together (each at alpha / their number), so an unshifted run
    raises this finding at most `alpha` of the time from them (benchmarks/calibrate_diagnosis.py measures it).
    """
    from dlrun.report import evidence

    f = Finding()
    val, test = fig["val"], fig["test"]
    gap = test.norm - val.norm
    result = _gap(evaluation, "val", "test")
    level = alpha / max(1, len(tests))
    fired = [t for t in tests.values() if t["p_value"] is not None and t["p_value"] < level]
    degraded = gap > tol and result.p_value < alpha
    f.stats = {"gap": test.error - val.error, "p_value": result.p_value, "tests_fired": [t["name"] for t in fired],
               "test_level": level}
    if not degraded and not fired:
        return f
    f.detected = True
    f.severity = _severity(gap, tol) if degraded else "mild"
    if degraded:
        f.evidence.append(f"test error {_pct(test.error, task)} vs validation error {_pct(val.error, task)}: "
                          f"a gap of {_pct(test.error - val.error, task)} (one-sided p = {result.p_value:.2g})")
    else:
        f.evidence.append(f"the test error ({_pct(test.error, task)}) is not significantly worse than validation "
                          f"({_pct(val.error, task)}), but the test split does not look like the validation split:")
    for t in fired:
        f.evidence.append(f"{t['what']}: p = {t['p_value']:.2g} < {level:.2g} ({t['detail']})")
    if degraded and not fired:
        f.evidence.append("no label-free test between validation and test inputs fires: the validation split may "
                          "have been overfit by early stopping or model selection, or p(y|x) changed")
    if table is not None:
        worst = evidence.worst_classes(table, tol)
        if worst:
            f.evidence.append("systematic errors in classes " + ", ".join(
                f"{name} ({100 * v:.0f}% -> {100 * t:.0f}%)" for name, v, t in worst))
        shares = evidence.share_changes(table)
        if shares:
            f.evidence.append("classes over/under-represented in test vs train: " + ", ".join(
                f"{name} ({100 * a:.0f}% -> {100 * b:.0f}%)" for name, a, b in shares))
    if "label_shift" in {t["name"] for t in fired} or (table is not None and evidence.share_changes(table)):
        f.actions.append(Action("the class priors changed: reweight the classes to the test priors or resample "
                                "the training data; a train-dev split separates variance from mismatch",
                                next_command(overrides, {"split.train_dev": 0.1})))
    if degraded:
        f.actions.append(Action("augment the training data with the transformation suspected (noise, rotation)",
                                next_command(overrides, {"reg.augment.noise": 0.3, "reg.augment.rotation": 15})))
    f.actions.append(Action("review the test data and the per-class errors; a train-dev split separates variance "
                            "from data mismatch", next_command(overrides, {"split.train_dev": 0.1})))
    return f

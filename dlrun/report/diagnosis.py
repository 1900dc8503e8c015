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
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from dlrun.report import health, stats
from dlrun.report.settings import get as _get

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
    decomposition: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    shift_tests: dict[str, dict] = field(default_factory=dict)  # label-free val-vs-test tests (report.evidence)
    per_class: Optional[dict] = None  # per-class errors and shares (classification)
    curves: dict[str, Any] = field(default_factory=dict)  # learning-curve shapes
    intervals: dict[str, list[float]] = field(default_factory=dict)  # split -> (1 - alpha) interval of its error
    data_mismatch: Finding = field(default_factory=Finding)  # validation worse than train-dev (needs train_dev)
    health: list[dict] = field(default_factory=list)  # training-health findings (report/health.py), most telling first
    versus_linear: Optional[dict] = None  # the network against a linear model on the same validation samples
    still_improving: Optional[dict] = None  # max_epochs ended a run whose validation loss was still falling
    loss_intervals: dict[str, list[float]] = field(default_factory=dict)  # split -> (1 - alpha) interval of its loss
    baseline_intervals: dict[str, list[float]] = field(default_factory=dict)  # baseline -> its (1 - alpha) interval
    signal_unconfirmed: Optional[dict] = None  # neither confirmed to beat chance nor not to: the note's action

    def findings(self) -> dict[str, Finding]:
        return {"underfitting": self.underfitting, "overfitting": self.overfitting,
                "data_mismatch": self.data_mismatch, "distribution_shift": self.distribution_shift}


# ----------------------------------------------------------------------------------------------------------------------
# the next command: the run's own overrides with the suggested change


def next_command(overrides: list[str], changes: dict[str, Any]) -> str:
    """`dlrun` + this run's overrides, minus resume and overwrite (a next run goes to a new folder) and any key in
    `changes` (a group such as `model` takes its keys `model.*` with it: they belong to the old option), plus
    `changes`."""
    keep = []
    for item in overrides:
        key = item.split("=", 1)[0].lstrip("+~")
        if key in changes or key in ("trainer.resume", "trainer.overwrite") or key.split(".", 1)[0] in changes:
            continue
        keep.append(item)
    keep += [f"{key}={_override_value(value)}" for key, value in changes.items()]
    return " ".join(["dlrun"] + [shlex.quote(item) for item in keep])


def _override_value(value: Any) -> str:
    """A value as the command line writes it."""
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(str(v) for v in value) + "]"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:g}"
    return "null" if value is None else str(value)


def _changes_nothing(command: str, overrides: list[str], settings: dict) -> bool:
    """Every value the command sets beyond this run's overrides is the value this run had: it would repeat the run
    (split.train_dev=0.1 suggested to a run with split.train_dev=0.1)."""
    missing = object()
    for word in set(shlex.split(command)[1:]) - set(overrides):
        key, _, value = word.partition("=")
        current = _get(settings, key.lstrip("+~"), missing)
        if current is missing or isinstance(current, dict) or _override_value(current) != value:
            return False
    return True


def _bigger_model(settings: dict) -> dict[str, Any]:
    """The override that doubles the model's capacity, for whatever family it is."""
    model = settings.get("model", {})
    if "hidden" in model:
        hidden = [2 * h for h in model["hidden"]]
        if not hidden:  # a linear model: one hidden layer
            return {"model.hidden": [64]}
        return {"model.hidden": hidden + hidden[-1:] if len(hidden) < 3 else hidden}  # wider, and deeper up to 3
    if "hidden_size" in model:
        return {"model.hidden_size": 2 * model["hidden_size"]}
    if "width" in model:
        return {"model.width": 2 * model["width"]}
    return {"trainer.max_epochs": 2 * _get(settings, "trainer.max_epochs", 50)}


def _smaller_model(settings: dict) -> dict[str, Any]:
    model = settings.get("model", {})
    if "hidden" in model:  # a linear model has no smaller version
        return {"model.hidden": [max(1, h // 2) for h in model["hidden"]]} if model["hidden"] else {}
    if "hidden_size" in model:
        return {"model.hidden_size": max(1, model["hidden_size"] // 2)}
    if "width" in model:
        return {"model.width": max(1, model["width"] // 2)}
    return {}


# ----------------------------------------------------------------------------------------------------------------------
# figures


@dataclass
class _Figure:
    """One split's error (an error rate, or an RMSE in the targets' units) with its interval."""

    error: float
    n: int
    low: float
    high: float


def _figures(evaluation: Any, confidence: float = 0.95) -> dict[str, _Figure]:
    return {name: _Figure(s.error, s.n, *stats.model_error_interval(evaluation.task, s.y_true, s.y_pred, confidence))
            for name, s in evaluation.splits.items()}


@dataclass
class Gap:
    """Error of split b minus split a, with its interval; `low` is the one-sided (1 - level) lower confidence bound.

    Classification: fractions (Newcombe's interval). Regression: RMSE in units of the training targets' std
    (bootstrap), so that `report.tolerance` reads alike for both."""

    a: str
    b: str
    size: float
    low: float
    high: float
    level: float
    confirmable: Optional[float] = None  # classification: the smallest observed gap these sample sizes can confirm

    def passes(self, tolerance: float) -> bool:
        """The one gate every finding uses: the gap exceeds the tolerance with confidence 1 - level."""
        return math.isfinite(self.low) and self.low > tolerance

    def within(self, tolerance: float) -> bool:
        """The mirror of `passes`, for a claim of no difference: the gap is below the tolerance with confidence
        1 - level (its one-sided upper bound, the interval's upper end, is below it)."""
        return math.isfinite(self.high) and self.high < tolerance

    def as_dict(self) -> dict:
        return {"size": self.size, "interval": [self.low, self.high], "level": self.level,
                "confirmable_from": self.confirmable}


def _gap(evaluation: Any, a: str, b: str, level: float, scale: float = 1.0, tol: Optional[float] = None) -> Gap:
    """b's error minus a's, with a two-sided (1 - 2 level) interval: its lower end is the one-sided bound. With
    `tol`, also the smallest gap that split sizes like these can confirm (the gate's blind zone above tol)."""
    sa, sb = evaluation.splits[a], evaluation.splits[b]
    if evaluation.task == "classification":
        low, high = stats.rate_diff_interval(sa.errors, sa.n, sb.errors, sb.n, confidence=1 - 2 * level)
        confirmable = None if tol is None else \
            stats.smallest_confirmable_diff(sa.errors, sa.n, sb.n, tol, confidence=1 - 2 * level)
        return Gap(a, b, sb.error - sa.error, low, high, level, confirmable)
    sq = [(np.asarray(s.y_pred, float) - np.asarray(s.y_true, float)) ** 2 for s in (sa, sb)]
    low, high = stats.rmse_diff_interval(sq[0], sq[1], confidence=1 - 2 * level)
    return Gap(a, b, (sb.error - sa.error) / scale, low / scale, high / scale, level)


def _pct(x: Optional[float], task: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    return f"{100 * x:.1f}%" if task == "classification" else f"{x:.4g}"


def interval_text(pair: Any, percent: bool) -> str:
    """[21.8, 30.9]: an interval's bounds in the value's unit (percentage points for error rates); "" when a bound
    is missing or not finite. The one format of every interval in the report's sentences and tables."""
    if not pair or any(bound is None or not math.isfinite(bound) for bound in pair):
        return ""
    low, high = (bound + 0.0 for bound in pair)  # + 0.0: -0.0 (an interval of zero losses) prints as 0
    return f"[{100 * low:.1f}, {100 * high:.1f}]" if percent else f"[{low:.4g}, {high:.4g}]"


def range_ends(decomposition: dict, percent: bool) -> tuple[str, str]:
    """The avoidable bias's range without a target, in words: its lower end, the training error minus a linear
    model's, with that difference's interval, or "0" (exact: the floor of a bias) when the difference is not above
    0; its upper end, the training error itself, with its interval."""
    low, high = decomposition["avoidable_bias_range"]
    intervals = decomposition.get("intervals") or {}
    task = "classification" if percent else "regression"
    lower = _pct_in(low, intervals.get("avoidable_bias"), task) if low > 0 else "0"
    return lower, _pct_in(high, intervals.get("train_error"), task)


def _pct_in(x: Optional[float], interval: Any, task: str) -> str:
    """12.3% [10.1, 14.8]: a figure with its interval (the interval left out when it has none)."""
    return f"{_pct(x, task)} {interval_text(interval, task == 'classification')}".rstrip()


def _rate_in(count: int, n: int, alpha: float, task: str) -> str:
    """count / n as a rate with its (1 - alpha) Wilson interval: '30.0% [22.1, 39.3]'."""
    return _pct_in(count / n, stats.error_interval(count, n, 1 - alpha), task)


def _fig(figure: _Figure, task: str) -> str:
    """A split's error with its (1 - alpha) interval."""
    return _pct_in(figure.error, [figure.low, figure.high], task)


def _gap_words(gap: Gap, task: str, tol: float, scale: float = 1.0) -> str:
    """The gate in words. Regression: `gap` and `tol` in units of the training targets' std (the gate's units),
    said in the target's units (RMSE, like every figure beside it: times `scale`), the tolerance's std fraction
    given too."""
    verdict = "exceeds" if gap.passes(tol) else "does not exceed"
    if task == "classification":
        return (f"a gap of {_pct(gap.size, task)}, whose one-sided {100 * (1 - gap.level):g}% lower confidence bound "
                f"{100 * gap.low:.2f}% {verdict} the tolerance {_pct(tol, task)}")
    return (f"a gap of {gap.size * scale:.4g}, whose one-sided {100 * (1 - gap.level):g}% lower confidence bound "
            f"{gap.low * scale:.4g} {verdict} the tolerance {tol * scale:.4g} ({tol:g} of the training targets' std)")


def _within_words(gap: Gap, task: str, tol: float, scale: float = 1.0) -> str:
    """Gap.within in words (the mirror of _gap_words: the upper bound against the tolerance)."""
    verdict = "is below" if gap.within(tol) else "is not below"
    bound = f"one-sided {100 * (1 - gap.level):g}% upper confidence bound"
    if task == "classification":
        return f"{_pct(gap.size, task)}, whose {bound} {100 * gap.high:.2f}% {verdict} the tolerance {_pct(tol, task)}"
    return (f"{gap.size * scale:.4g}, whose {bound} {gap.high * scale:.4g} {verdict} the tolerance {tol * scale:.4g} "
            f"({tol:g} of the training targets' std)")


def _upper_words(gap: Gap, task: str, tol: float, scale: float = 1.0) -> str:
    """The upper bound of a gap against the tolerance, after _gap_words has given its size and lower bound."""
    bound = f"{100 * gap.high:.2f}%" if task == "classification" else f"{gap.high * scale:.4g}"
    return f"and whose upper bound {bound} {'is below' if gap.within(tol) else 'is not below'} the tolerance"


def _blind_zone(gap: Gap, evaluation: Any, task: str) -> str:
    """Why a real degradation can go unconfirmed: the smallest gap these split sizes confirm, when it is known."""
    if gap.confirmable is None or not math.isfinite(gap.confirmable):
        return ""
    na, nb = evaluation.splits[gap.a].n, evaluation.splits[gap.b].n
    return (f"; with {na} {gap.a.replace('_', '-')} and {nb} {gap.b.replace('_', '-')} samples, only a gap of "
            f"{_pct(gap.confirmable, task)} or more is confirmed, larger splits confirm smaller gaps")


@dataclass
class Reference:
    """What the training error is measured against: the best achievable error, or an estimate of it.

    kind: "target" (report.target_error: the user's, taken as exact), "linear" (a linear model's training error,
    or its validation error when it memorised its training rows: what is achievable is at most about that, so the
    avoidable bias measured against it is a lower estimate) or "zero" (no baseline)."""

    value: float
    name: str
    kind: str
    n: Optional[int] = None  # the rows behind a linear model's error (classification: its own uncertainty)
    source: Optional[str] = None  # the baselines entry it is (its interval is baseline_intervals' entry)
    squared_errors: Optional[np.ndarray] = None  # regression: a linear model's, behind its RMSE (its uncertainty)
    fitted: Optional[tuple[np.ndarray, np.ndarray]] = None  # a linear model's training rows: (targets, predictions)


def _linear_held_out(baselines: dict, evaluation: Any) -> tuple[str, Optional[float], Optional[int], Any, Any]:
    """(split, error, n, targets, predictions) of the linear model on held-out rows of the training distribution:
    the train-dev split when there is one (validation may come from elsewhere: its error would be data mismatch,
    not memorisation), else validation."""
    split = "train_dev" if baselines.get("simple_train_dev_error") is not None and evaluation is not None \
        and "train_dev" in evaluation.splits else "val"
    truth = evaluation.splits[split].y_true if evaluation is not None and split in evaluation.splits else None
    return (split, baselines.get(f"simple_{split}_error"), baselines.get(f"simple_{split}_n"), truth,
            baselines.get(f"simple_{split}_pred"))


def _memorised(task: str, tol: float, baselines: dict, evaluation: Any, alpha: float) -> bool:
    """The linear model memorised its training rows, by the one rule: its error on held-out rows of the training
    distribution (_linear_held_out: train-dev, else validation) exceeds its training error by more than the
    tolerance with confidence 1 - alpha (Newcombe's interval; regression: a bootstrap of the RMSE difference, in
    units of the targets' std). False when its predictions are not there to tell."""
    simple, simple_n = baselines.get("simple_train_error"), baselines.get("simple_train_n")
    _, held, held_n, truth, pred = _linear_held_out(baselines, evaluation)
    if simple is None or not math.isfinite(simple) or held is None or not held_n or not simple_n:
        return False
    if task == "classification":
        low, _ = stats.rate_diff_interval(int(round(simple * simple_n)), simple_n,
                                          int(round(held * held_n)), held_n, confidence=1 - 2 * alpha)
        return math.isfinite(low) and low > tol
    if evaluation is None:
        return False
    sq_fit = _squared_errors(task, baselines.get("simple_fit_true"), baselines.get("simple_fit_pred"))
    sq_held = _squared_errors(task, truth, pred)
    if sq_fit is None or sq_held is None:
        return False
    low, _ = stats.rmse_diff_interval(sq_fit, sq_held, confidence=1 - 2 * alpha)
    return math.isfinite(low) and low / float(baselines.get("target_scale", 1.0)) > tol


def reference(task: str, tol: float, target_error: Optional[float], baselines: dict, evaluation: Any = None,
              alpha: float = 0.05) -> Reference:
    """The underfitting verdict's reference, and the decomposition's: the user's target, else what a linear model
    reaches, else 0. A linear model that memorised its training rows (_memorised: few rows, many inputs) says little
    about what is achievable: its held-out error (train-dev's, else validation's) is used, and named so."""
    simple, simple_n = baselines.get("simple_train_error"), baselines.get("simple_train_n")
    if target_error is not None:
        return Reference(float(target_error), "the target error (report.target_error)", "target")
    if _memorised(task, tol, baselines, evaluation, alpha):
        split, held, held_n, truth, pred = _linear_held_out(baselines, evaluation)
        where = "train-dev" if split == "train_dev" else "validation"
        return Reference(held, f"a linear model's {where} error (it overfits its training rows: its {where} error is "
                         "above its training error by more than the tolerance)", "linear",
                         held_n, f"simple_{split}_error", _squared_errors(task, truth, pred))
    if simple is not None and math.isfinite(simple):
        fit_true, fit_pred = baselines.get("simple_fit_true"), baselines.get("simple_fit_pred")
        return Reference(simple, "a linear model's training error", "linear", simple_n, "simple_train_error",
                         _squared_errors(task, fit_true, fit_pred),
                         (fit_true, fit_pred) if fit_true is not None and fit_pred is not None else None)
    return Reference(0.0, "zero", "zero")


def _squared_errors(task: str, truth: Any, pred: Any) -> Optional[np.ndarray]:
    """A regression baseline's per-sample squared errors (n,), or None (classification, or no predictions)."""
    if task != "regression" or truth is None or pred is None or len(truth) != len(pred):
        return None
    return (np.asarray(pred, dtype=np.float64) - np.asarray(truth, dtype=np.float64)) ** 2


def excess_interval(evaluation: Any, ref: Reference, confidence: float) -> tuple[float, float]:
    """Two-sided interval of (training error - reference): the reference is exact when the user gave it (or it is
    0); a linear model's error is itself an estimate from its own rows. When it was fitted on the training rows
    themselves (all of them, in order: up to 5000), the two models are compared on the same samples, paired
    (stats.paired_error_difference: Newcombe's paired interval, or a paired bootstrap of the RMSE difference); else
    classification takes Newcombe's interval over both samples, regression a bootstrap of the RMSE difference over
    both samples of squared errors (in target units)."""
    train = evaluation.splits["train"]
    if ref.kind == "linear" and _same_rows(ref.fitted, train):
        paired = stats.paired_error_difference(evaluation.task, train.y_true, ref.fitted[1], train.y_pred,
                                               confidence=confidence)
        return tuple(paired["interval"])
    if evaluation.task == "classification":
        train_errors = int(round(train.error * train.n))
        if ref.kind == "linear" and ref.n:
            return stats.rate_diff_interval(int(round(ref.value * ref.n)), ref.n, train_errors, train.n,
                                            confidence=confidence)
        low, high = stats.error_interval(train_errors, train.n, confidence)
        return low - ref.value, high - ref.value
    if ref.kind == "linear" and ref.squared_errors is not None:
        sq = _squared_errors("regression", train.y_true, train.y_pred)
        return stats.rmse_diff_interval(ref.squared_errors, sq, confidence=confidence)
    low, high = stats.model_error_interval("regression", train.y_true, train.y_pred, confidence)
    return low - ref.value, high - ref.value


def _same_rows(fitted: Optional[tuple[np.ndarray, np.ndarray]], train: Any) -> bool:
    """Whether a linear model's fitted rows are the training split's, in the same order (its targets are)."""
    if fitted is None or train.y_true is None or len(fitted[0]) != len(train.y_true):
        return False
    return bool(np.allclose(np.asarray(fitted[0], dtype=np.float64), np.asarray(train.y_true, dtype=np.float64),
                            rtol=1e-5, atol=1e-8))


def decompose(fig: dict[str, _Figure], target_error: Optional[float], achievable: Optional[float] = None,
              intervals: Optional[dict[str, list[float]]] = None) -> dict[str, Any]:
    """Ng's decomposition in the error's own units (RMSE for regression): each term is the difference between two
    adjacent error levels; `focus` names the largest of avoidable bias, variance and data mismatch: what to work on
    first ("Machine Learning Yearning", ch. 20-29).

    Without report.target_error the optimal error is unknown: it lies between 0 and `achievable` (what a linear
    model reaches: the underfitting verdict's reference), so the avoidable bias lies between train - achievable
    (at least 0) and train - 0 (`avoidable_bias_range`). The focus is then named only when that range does not
    straddle the largest other term; otherwise it is null (`focus_undetermined`): set report.target_error. A term
    not confirmed above 0 (at 0 or below, or its interval's lower end) is never the focus (nothing shown to work
    on); when no term is, the focus is null. `intervals`: each level's and term's two-sided (1 - alpha) interval,
    kept as given."""
    intervals = intervals or {}

    def above_zero(term: str, value: float) -> bool:
        low = (intervals.get(term) or [None])[0]
        return value > 0 and (low is None or (math.isfinite(low) and low > 0))

    train = fig["train"].error
    dev = fig["train_dev"].error if "train_dev" in fig else None
    val, test = fig["val"].error, fig["test"].error
    others = {"variance": (dev if dev is not None else val) - train,
              "data_mismatch": None if dev is None else val - dev}
    finite = {k: v for k, v in others.items() if v is not None and math.isfinite(v)}
    positive = {k: v for k, v in finite.items() if above_zero(k, v)}  # else nothing shown to work on
    largest = max(positive, key=positive.get) if positive else None
    bias_range, undetermined = None, False
    if target_error is not None or not math.isfinite(train):
        if target_error is not None and math.isfinite(train) and above_zero("avoidable_bias", train - target_error):
            positive["avoidable_bias"] = train - target_error
        focus = max(positive, key=positive.get) if positive else None
    else:
        upper = train
        lower = max(0.0, train - achievable) if achievable is not None and math.isfinite(achievable) else upper
        bias_range = [lower, upper]
        if above_zero("avoidable_bias", lower) and (largest is None or lower >= positive[largest]):
            focus = "avoidable_bias"
        elif largest is not None and positive[largest] >= upper:
            focus = largest
        else:
            focus = None
            undetermined = upper > 0  # the bias may be the largest term, or 0
    # a term with a larger estimate than the focus's that is not confirmed above 0: the focus is the largest confirmed
    sizes = {**finite, **({"avoidable_bias": train - target_error} if target_error is not None else {})}
    focus_size = positive.get(focus, bias_range[0] if bias_range else None) if focus else None
    beyond = focus is not None and focus_size is not None and any(
        v > focus_size for k, v in sizes.items() if k != focus and k not in positive)
    return {
        "target_error": target_error,
        "achievable": None if target_error is not None else achievable,
        "train_error": fig["train"].error,
        "train_dev_error": dev,
        "val_error": val,
        "test_error": test,
        "avoidable_bias": None if target_error is None else train - target_error,
        "avoidable_bias_range": bias_range,
        "variance": others["variance"],
        "data_mismatch": others["data_mismatch"],
        "val_to_test": test - val,
        "focus": focus,
        "focus_confirmed_only": beyond,
        "focus_undetermined": undetermined,
        "intervals": dict(intervals),
    }


# actions of the other findings that raise the training error (regularisation, augmentation, less capacity): they
# wait while the underfitting finding fires
RAISE_BIAS = ("more regularisation", "data augmentation", "less capacity", "augment the training data",
              "make the training data more like")


def _wait_for_the_training_error(finding: Finding) -> None:
    """Bad on training data comes first (the seed method's order, and Ng's): while the underfitting finding fires,
    another finding's actions that would raise the training error it asks to lower wait, and the finding says so."""
    waiting = [a for a in finding.actions if a.text.startswith(RAISE_BIAS)]
    if not finding.detected or not waiting:
        return
    finding.actions = [a for a in finding.actions if a not in waiting]
    finding.evidence.append("the training error is itself too high (underfitting): fix it first; "
                            + ", ".join(a.text.split(":")[0].split(";")[0] for a in waiting)
                            + " would raise it, so " + ("they wait" if len(waiting) > 1 else "it waits")
                            + " until it is fixed")


FOCUS_FINDING = {"avoidable_bias": "underfitting", "variance": "overfitting", "data_mismatch": "data_mismatch"}


def focus_advice(focus: str, fired_with_actions: set[str], settings: Optional[dict] = None) -> str:
    """What to do about the focus: the next runs of its finding when that fired (they are specific to this run, and
    the generic list could contradict them: a finding may drop "a bigger model"), else Ng's generic advice, without
    "less regularisation" for a run that has none (with its settings)."""
    finding = FOCUS_FINDING.get(focus)
    if finding in fired_with_actions:
        return f"the {finding.replace('_', ' ')} finding's next runs"
    advice = FOCUS_ADVICE.get(focus, "see the decomposition")
    if settings is not None and "reg" in settings and not _regularised(settings):
        advice = advice.replace(", less regularisation", "")
    return advice


FOCUS_ADVICE = {"avoidable_bias": "a bigger model, train longer, less regularisation",
                "variance": "more regularisation, more data",
                "data_mismatch": "make the training data more like the validation data"}


def _severity(gap: Gap, tolerance: float) -> str:
    """The one rule at twice the size: a finding is severe when its gap exceeds twice the tolerance with confidence
    (the one-sided lower bound above 2 x tolerance), mild when it exceeds the tolerance only."""
    return "severe" if gap.passes(2 * tolerance) else "mild"


# ----------------------------------------------------------------------------------------------------------------------


def diagnose(history: Any, evaluation: Any, report_cfg: Any, overrides: list[str], settings: dict,
             baselines: Optional[dict] = None, class_names: Optional[list[str]] = None,
             resume: Optional[str] = None) -> Diagnosis:
    """Decide the findings from the history (per-epoch curves) and the final evaluation of each split.

    One statistical rule for every finding: the one-sided (1 - level) lower confidence bound of the gap must exceed
    `report.tolerance`. Underfitting, overfitting and data mismatch use level = report.alpha. Distribution shift
    splits alpha: alpha/2 for the test-vs-validation error gap (the verdict), alpha/2 for the label-free family
    (Bonferroni inside it), which explains the gap or adds a note: an unshifted run gets a shift verdict or a shift
    note at most alpha of the time. A label-free test that fires while the error does not move is a note.
    `baselines`: chance_error, simple_train_error, simple_train_n, simple_val_error, target_scale (report.baselines).
    `resume`: the command that continues an interrupted run (starting with `dlrun`): its "train longer".
    """
    from dlrun.report import evidence

    baselines = baselines or {}
    task = evaluation.task
    target_scale = float(baselines.get("target_scale", 1.0))
    tol, alpha = report_cfg.tolerance, report_cfg.alpha
    fig = _figures(evaluation, confidence=1 - alpha)
    ref = reference(task, tol, report_cfg.target_error, baselines, evaluation, alpha)
    decomposition = decompose(fig, report_cfg.target_error, achievable=ref.value,
                              intervals=_decomposition_intervals(fig, evaluation, ref, alpha, target_scale))
    notes: list[str] = []
    curves = evidence.curves(history)
    num_classes = len(class_names) if class_names else 0
    tests = evidence.shift_tests(evaluation.splits["val"], evaluation.splits["test"], task, num_classes, alpha / 2)
    table = evidence.per_class(evaluation, class_names) if class_names else None

    baseline_ints = baseline_intervals(evaluation, baselines, 1 - alpha)
    if decomposition["achievable"] is not None:  # a linear model's error, itself an estimate, and which one
        decomposition["achievable_interval"] = baseline_ints.get(ref.source) if ref.source else None
        decomposition["achievable_name"] = ref.name
    under = _underfitting(fig, evaluation, history, curves, task, tol, alpha, ref, baselines, overrides, settings,
                          notes, constant_loss(task, num_classes), baseline_ints, resume)
    untrained = under.stats.get("untrained")
    over = _overfitting(fig, evaluation, history, curves, task, tol, alpha, overrides, settings, target_scale)
    found = health.check(getattr(history, "dynamics", []), history.rows, settings)
    causes = [h for h in found if h.name in health.CAUSES]
    safe = _safe_remedy(untrained, under.stats.get("steps_too_big"), settings)
    if under.detected and causes and not under.stats.get("no_signal"):
        # the dynamics say why: their actions lead, in the order of the findings; after a divergence the safe
        # learning rate stays first (the run must train at all before anything else can be judged)
        under.evidence.append("training health: " + "; ".join(f"{h.name.replace('_', ' ')} ({h.evidence})"
                                                               for h in causes))
        # the curve's own first remedy stays first when it is the safe learning rate after a divergence, or less
        # regularisation when the run is regularised (weight decay 10 makes the gradients vanish: the symptom's
        # remedies come after its cause's)
        first = under.actions[0].text if under.actions else ""
        at = 1 if (under.stats.get("steps_too_big") or first.startswith("less regularisation")) and first else 0
        lr = float(_get(settings, "optim.lr", 1e-3))
        # one direction for the learning rate: a loss that barely moved or still falls says the steps are not too
        # big, so a health finding's "lower the learning rate" would contradict the curve's "raise it"
        against_curve = under.stats.get("train_trend") in ("flat", "falling")
        if not untrained:  # a run that did not train at all gets the safe learning rate alone: its symptoms follow
            under.actions[at:at] = [Action(f"{h.name.replace('_', ' ')}: {text}",
                                           next_command(overrides, safe(change) if safe else change))
                                    for h in causes for text, change in zip(h.texts, h.changes)
                                    if not (against_curve and change.get("optim.lr", lr) < lr)]
    if under.stats.get("no_signal"):  # one cause explains both gaps: say it once
        over = Finding(stats={**over.stats, "explained_by": "no_signal"})
        # and Ng's terms assume something to learn: no focus to work on before the data are checked
        decomposition.update(focus=None, focus_undetermined=False, no_signal=True)
    mismatch = _data_mismatch(fig, evaluation, task, tol, alpha, overrides, target_scale, settings)
    versus = _versus_linear(evaluation, baselines, tol, alpha, target_scale)
    if untrained:
        versus = None  # a network that did not train: the underfitting finding says why, not a linear model
    if versus and versus["fires"]:
        _say_a_linear_model_does_better(versus, under, over, task, tol, target_scale, overrides, settings, notes,
                                        outputs=num_classes if task == "classification" else 1)
    shift = _shift(fig, evaluation, history, task, tol, alpha, overrides, tests, table, target_scale, notes, settings,
                   mismatch.detected)
    if under.detected and not under.stats.get("no_signal"):
        for finding in (over, mismatch, shift):
            _wait_for_the_training_error(finding)
    if history.stop_reason == "interrupted":
        notes.append("the run was interrupted: the figures describe a partial training")
    if history.stop_reason == "divergence_threshold":
        monitor = _get(settings, "early_stop.monitor", "val_loss")
        limit = _get(settings, "early_stop.divergence_threshold", None)
        last = history.rows[-1].get(monitor) if history.rows else None
        notes.append(f"early_stop.divergence_threshold={limit} stopped the run at epoch {history.epochs_run}: "
                     f"{monitor} {last:.4g} is above it (a finite value: not a NaN); the figures are epoch "
                     f"{history.best_epoch}'s weights, and a longer run needs the threshold raised or removed"
                     if last is not None else f"early_stop.divergence_threshold={limit} stopped the run")
    still = _still_improving(history, curves, settings, overrides, [under, over, mismatch, shift], notes)
    term_findings = {"underfitting": under, "overfitting": over, "data_mismatch": mismatch}
    fired = {name for name, f in term_findings.items() if f.detected and f.actions}
    decomposition["focus_advice"] = focus_advice(decomposition["focus"], fired, settings) \
        if decomposition["focus"] else None  # with the run's settings, which report.json does not keep
    decomposition["signal_unconfirmed"] = bool(under.stats.get("signal_unconfirmed"))  # the focus sentence says so
    notes.insert(0, focus_note(decomposition, ref.name, task, shift.detected, fired,
                               {name for name, f in term_findings.items() if f.detected}))
    _drop_repeated_commands([under, over, mismatch, shift], overrides, settings)
    return Diagnosis(underfitting=under, overfitting=over, distribution_shift=shift, data_mismatch=mismatch,
                     decomposition=decomposition, notes=notes, shift_tests=tests, per_class=_jsonable(table),
                     curves=curves, intervals={name: [f.low, f.high] for name, f in fig.items()},
                     health=_health_entries(found, [under, over, mismatch, shift], overrides, safe),
                     versus_linear=versus, still_improving=still, baseline_intervals=baseline_ints,
                     signal_unconfirmed=under.stats.get("signal_unconfirmed"),
                     loss_intervals={name: list(stats.mean_interval(s.sample_loss, 1 - alpha))
                                     for name, s in evaluation.splits.items()})


def _safe_remedy(untrained: Optional[str], steps_too_big: bool,
                 settings: dict) -> Optional[Callable[[dict], dict]]:
    """How a symptom's remedy is tried after steps that were too big, the one rule for the underfitting finding's
    actions and the health entries: after a run that did not train, with a learning rate that trains
    (health.lower_lr); after one whose steps were too big on the way, the same except the remedies that tame the
    steps (health.at_safe_lr); otherwise as it is (None)."""
    if untrained:
        return lambda change: {"optim.lr": health.lower_lr(settings), **change}
    if steps_too_big:
        return lambda change: health.at_safe_lr(change, settings)
    return None


def _health_entries(found: list, findings: list[Finding], overrides: list[str],
                    safe: Optional[Callable[[dict], dict]] = None) -> list[dict]:
    """The training-health findings for report.json, each remedy as a command (each change as safe(change) makes it:
    with a learning rate that trains after a run whose steps were too big); a command a finding or an earlier health
    entry already suggests is not repeated."""
    seen = {a.command for f in findings for a in f.actions}
    out = []
    for h in found:
        actions = []
        for text, change in zip(h.texts, h.changes):
            command = next_command(overrides, safe(change) if safe else change)
            if command not in seen:
                seen.add(command)
                actions.append({"text": text, "command": command})
        out.append({"name": h.name, "evidence": h.evidence, "actions": actions})
    return out


# report.json evidence entries that may carry an action
NOTE_ACTIONS = ("signal_unconfirmed", "versus_linear", "still_improving")


def note_actions(report: dict) -> list[tuple[str, dict]]:
    """A report.json's suggestions outside the findings (its notes' commands), as (evidence entry, {text, command}),
    in NOTE_ACTIONS order: the data checked when no signal is confirmed either way (nothing else means much before
    that), a linear model that does better on validation (measured), more epochs (a trend)."""
    evidence = report.get("evidence") or {}
    return [(name, (evidence.get(name) or {})["action"]) for name in NOTE_ACTIONS
            if (evidence.get(name) or {}).get("action")]


def _still_improving(history: Any, curves: dict, settings: dict, overrides: list[str], findings: list[Finding],
                     notes: list[str]) -> Optional[dict]:
    """trainer.max_epochs ended the run while its validation loss was still falling (stats.curve_trend: a
    significant drop over the last epochs): a note with the longer run, unless a finding already suggests it.
    {epochs_run, val_trend, action {text, command}} for report.json (dlrun-iterate tries it when nothing fired)."""
    if history.stop_reason != "max_epochs" or curves.get("val_trend") != "falling":
        return None
    val_loss = history.column("val_loss")
    if not np.isfinite(val_loss[-1]) or val_loss[-1] > np.nanmin(val_loss):
        return None  # falling again, but above its minimum: a U-curve (overfitting), not a run still improving
    epochs = _get(settings, "trainer.max_epochs", history.epochs_run)
    action = Action("train longer", next_command(overrides, {"trainer.max_epochs": 2 * epochs}))
    if any(a.command == action.command for f in findings for a in f.actions):
        return None  # a finding says it already, with its reasons
    notes.append(f"the validation loss was still falling when trainer.max_epochs={epochs} ended the run (a linear fit "
                 f"over the last epochs drops by more than {100 * stats.FALLING_REL_DROP:g}% of its level, one-sided "
                 f"p < {stats.FALLING_P_VALUE:g}): more epochs may lower the held-out errors: {action.command}")
    return {"epochs_run": history.epochs_run, "val_trend": curves["val_trend"], "action": asdict(action)}


def _lift(history: Any) -> dict:
    """A run that early_stop.divergence_threshold stopped would stop again at the same epoch: a longer run lifts it."""
    return {"early_stop.divergence_threshold": None} if history.stop_reason == "divergence_threshold" else {}


def _versus_linear(evaluation: Any, baselines: dict, tol: float, alpha: float, scale: float) -> Optional[dict]:
    """The network's validation error minus a linear model's, on the same validation samples (paired: Newcombe's
    paired interval, or a paired bootstrap of the RMSE difference), gated by the one rule: it `fires` when the
    one-sided (1 - alpha) lower bound exceeds the tolerance. None without the linear model's predictions."""
    linear = baselines.get("simple_val_pred")
    val = evaluation.splits["val"]
    if linear is None or len(linear) != val.n or not val.n:
        return None
    pred = np.asarray(val.y_pred, dtype=np.float64 if evaluation.task == "regression" else None)
    if evaluation.task == "regression" and not np.isfinite(pred).all():
        return None  # a diverged network: the underfitting finding says so
    paired = stats.paired_error_difference(evaluation.task, val.y_true, np.asarray(linear), pred,
                                           confidence=1 - 2 * alpha)
    versus = {"linear_val_error": baselines.get("simple_val_error"), "val_error": val.error,
              # each model's own error with its (1 - alpha) interval, as every figure in the report
              "linear_val_interval": list(stats.model_error_interval(evaluation.task, val.y_true, linear, 1 - alpha)),
              "val_interval": list(stats.model_error_interval(evaluation.task, val.y_true, pred, 1 - alpha)),
              "difference": paired["difference"], "interval": paired["interval"], "level": alpha, "n": paired["n"]}
    versus["fires"] = _linear_gap(versus, evaluation.task, scale).passes(tol)
    return versus


def _linear_gap(versus: dict, task: str, scale: float) -> Gap:
    """The network-minus-linear difference as a Gap in the gate's units (regression: of the targets' std)."""
    unit = 1.0 if task == "classification" else scale
    low, high = versus["interval"]
    return Gap("linear", "val", versus["difference"] / unit, low / unit, high / unit, versus["level"])


LR_TRENDS = ("flat", "oscillating", "diverged")  # training-loss shapes the underfitting finding blames on the lr


def _regularised(settings: dict) -> bool:
    """The run uses weight decay, dropout or L1."""
    reg = settings.get("reg", {})
    return any(reg.get(key, 0) > 0 for key in ("weight_decay", "dropout", "l1"))


def _less_reg(settings: dict) -> dict[str, Any]:
    """The underfitting finding's "less regularisation": weight decay and L1 a hundred times smaller, no dropout (only
    the ones the run uses: `reg.dropout=0` for a run without dropout repeats it; all three when none is set)."""
    reg = settings.get("reg", {})
    change = {"reg.weight_decay": reg.get("weight_decay", 0) / 100, "reg.dropout": 0.0,
              "reg.l1": reg.get("l1", 0) / 100}
    used = {key: value for key, value in change.items() if reg.get(key.split(".")[1], 0) > 0}
    return used or change


def _say_a_linear_model_does_better(versus: dict, under: Finding, over: Finding, task: str, tol: float, scale: float,
                                    overrides: list[str], settings: dict, notes: list[str], outputs: int = 1) -> None:
    """Evidence for the finding that fired (underfitting first: it is about training at all), or a note when none
    did; with a linear model as the next run (an MLP without hidden layers)."""
    if under.stats.get("no_signal"):
        return  # a linear model at chance cannot do better by the tolerance; if it ever did, "no relation" would be wrong
    model = settings.get("model", {})
    if model.get("family") == "mlp" and list(model.get("hidden", [])) == []:
        return  # the network is a linear model already: the gap is its training (the findings say how)
    low, high = versus["interval"]
    text = (f"a linear model does better on the same validation samples: "
            f"{_pct_in(versus['linear_val_error'], versus.get('linear_val_interval'), task)} vs the network's "
            f"{_pct_in(versus['val_error'], versus.get('val_interval'), task)} (paired, "
            f"{100 * (1 - 2 * versus['level']):g}% interval of the difference [{_pct(low, task)}, "
            f"{_pct(high, task)}]): "
            + _gap_words(_linear_gap(versus, task, scale), task, tol, 1.0 if task == "classification" else scale))
    change = {"model.hidden": []} if model.get("family") == "mlp" else {"model": "mlp", "model.hidden": []}
    what = "a linear model (an MLP without hidden layers), which does better on this data"
    # the linear model that does better was fitted to convergence (scikit-learn): its command must train it, not
    # repeat what held this run back (optim.lr=1e-5 gave the MLP without hidden layers 87.8% against its 2.8%)
    lr = float(_get(settings, "optim.lr", 1e-3))
    if lr != health.default_lr(settings) and (
            under.detected and (under.stats.get("train_trend") in LR_TRENDS or under.stats.get("steps_too_big"))
            or lr < health.default_lr(settings) / 10 or lr > 10 * health.default_lr(settings)):
        change["optim.lr"] = health.default_lr(settings)
        what += ", at the optimizer's usual learning rate"
    # a stop that ended this run early, or too few epochs, would end the linear model's too
    stops = [key for key in ("early_stop.baseline", "early_stop.stopping_threshold") if _get(settings, key, None)
             is not None]
    change.update({key: None for key in stops})
    parts = [f"without {key}" for key in stops]
    if int(_get(settings, "trainer.max_epochs", 50)) < 50 and under.detected \
            and under.stats.get("train_trend") in ("short", "falling"):
        change["trainer.max_epochs"] = 50  # this run's epochs were too few for its own curve, the default is not
        parts.append("for 50 epochs")
    if parts:
        what += ", " + " and ".join(parts)
    if under.detected and any(a.text.startswith("less regularisation") for a in under.actions):
        change.update(_less_reg(settings))  # nor with the regularisation the finding suspects
        what += ", with less regularisation"
    action = Action(what, next_command(overrides, change))
    versus["action"] = asdict(action)  # dlrun-iterate reads it when no finding fired (then only the note says it)
    finding = under if under.detected else over if over.detected else None
    if finding is not None:
        finding.evidence.append(text)
        finding.actions.append(action)
        hidden = list(model.get("hidden", [])) if model.get("family") == "mlp" else []
        bottleneck = bool(hidden) and min(hidden) < outputs  # narrower than its outputs: less than a linear model
        if finding is under and any(a.text == "a bigger model" for a in under.actions) and not bottleneck:
            # a model with far less capacity does better: capacity is not what this network lacks
            under.actions = [a for a in under.actions if a.text != "a bigger model"]
            # and the curve's "too little capacity" would contradict it: its sentence without that cause
            causes = under.stats.get("converged_causes")
            if causes:
                said = _converged_words(causes)
                under.stats["converged_causes"] = [c for c in causes if c != "too little capacity"]
                under.evidence = [_converged_words(under.stats["converged_causes"]) if e == said else e
                                  for e in under.evidence]
            under.evidence.append("so more capacity is not what the network lacks: no bigger model is suggested")
    else:
        notes.append(f"{text}: the network gives away more than it gains on this data (capacity, regularisation "
                     f"or training); a linear model: {action.command}")


def _decomposition_intervals(fig: dict[str, _Figure], evaluation: Any, ref: Reference, alpha: float,
                             scale: float) -> dict[str, list[float]]:
    """Each level's and term's two-sided (1 - alpha) interval, in the error's units: the levels' from `fig`, the
    avoidable bias's against the reference in use (the target, or the estimate the lower end of its range uses),
    the other terms' from the two splits' errors (Newcombe; regression: bootstrap)."""
    out = {f"{name}_error": [f.low, f.high] for name, f in fig.items()}
    out["avoidable_bias"] = list(excess_interval(evaluation, ref, 1 - alpha))
    held_out = "train_dev" if "train_dev" in fig else "val"
    pairs = {"variance": ("train", held_out), "val_to_test": ("val", "test")}
    if "train_dev" in fig:
        pairs["data_mismatch"] = ("train_dev", "val")
    for term, (a, b) in pairs.items():
        gap = _gap(evaluation, a, b, alpha / 2, scale)
        out[term] = [gap.low * scale, gap.high * scale]
    return out


def focus_note(decomposition: dict, reference_name: str, task: str, shift_detected: bool = False,
               fired_with_actions: Optional[set[str]] = None, detected: Optional[set[str]] = None) -> str:
    """The decomposition's own words: the focus and why, or why there is none. `detected`: the findings that fired
    (by default those with next runs, `fired_with_actions`)."""
    intervals = decomposition.get("intervals") or {}
    terms = [("variance", "variance"), ("data mismatch", "data_mismatch")]
    listed = ", ".join(f"{name} {_pct_in(decomposition[key], intervals.get(key), task)}" for name, key in terms
                       if decomposition.get(key) is not None)
    bias_range = decomposition.get("avoidable_bias_range")
    why = ""
    if decomposition.get("avoidable_bias") is not None:
        bias = f"avoidable bias {_pct_in(decomposition['avoidable_bias'], intervals.get('avoidable_bias'), task)}"
    elif bias_range is not None:
        low, high = range_ends(decomposition, task == "classification")
        bias = f"avoidable bias {low}" if low == high else f"avoidable bias between {low} and {high}"
        what = "what a linear model reaches" if reference_name.startswith("a linear") else "the reference"
        why = ("the best achievable error lies between 0 and about "
               f"{_pct_in(decomposition.get('achievable'), decomposition.get('achievable_interval'), task)} ({what})")
    else:
        bias = "avoidable bias n/a"
    listed = f"{bias}, {listed}" if listed else bias
    focus = decomposition.get("focus")
    if decomposition.get("no_signal"):
        return (f"focus: none named ({listed}): no usable relation between the inputs and the outputs shows in these "
                "data (the underfitting finding), and Ng's terms assume something to learn: check the data first")
    if focus:
        finding = FOCUS_FINDING.get(focus)
        fired = fired_with_actions or set()
        detected = fired if detected is None else detected
        largest = f"focus: {focus.replace('_', ' ')} is the largest term" \
            + (" confirmed above 0" if decomposition.get("focus_confirmed_only") else "") + f" ({listed})"
        shift = "; the test split's own gap is the distribution-shift finding" if shift_detected else ""
        if finding in detected and finding not in fired and "underfitting" in fired:
            return (f"{largest}; the {finding.replace('_', ' ')} finding's next runs wait until the training error "
                    f"is fixed (they would raise it): the underfitting finding's next runs first{shift}")
        unconfirmed = "" if finding in detected else \
            f", not confirmed beyond the tolerance (the {finding.replace('_', ' ')} finding did not fire)"
        return (f"{largest}{unconfirmed}: work on it first (Ng): "
                f"{decomposition.get('focus_advice') or focus_advice(focus, fired)}{shift}"
                + (f"; {why}" if why and focus == "avoidable_bias" else ""))
    if decomposition.get("focus_undetermined"):
        return (f"focus: none named ({listed}): the decomposition cannot tell whether the avoidable bias is the "
                f"largest term, or above 0 at all: {why}: set report.target_error to your estimate")
    return f"focus: none named ({listed}): no term is confirmed above 0, nothing these splits can show to work on"


def _jsonable(table: Optional[dict]) -> Optional[dict]:
    if table is None:
        return None
    return {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in table.items()}


def _drop_repeated_commands(findings: list[Finding], overrides: list[str] = (),
                            settings: Optional[dict] = None) -> None:
    """A command appears once in the report: the first finding that suggests it keeps it; none repeats this run (a
    change to a value the run already has)."""
    seen: set[str] = set()
    for f in findings:
        kept = []
        for action in f.actions:
            if action.command not in seen and not _changes_nothing(action.command, list(overrides), settings or {}):
                seen.add(action.command)
                kept.append(action)
        f.actions = kept


def tolerance_in_units(tol: float, task: str, scale: float) -> float:
    """report.tolerance in the error's units: a fraction of samples, or for regression times the targets' std."""
    return tol * scale if task == "regression" else tol


def chance_predictions(evaluation: Any, split: str = "val") -> np.ndarray:
    """What a model that ignores its input predicts for each sample of `split`: the training majority class, or
    the training mean (the chance baseline, stats.chance_error)."""
    guess = stats.chance_prediction(evaluation.splits["train"].y_true, evaluation.task)
    return np.full(evaluation.splits[split].n, guess)


def baseline_intervals(evaluation: Any, baselines: dict, confidence: float) -> dict[str, list[float]]:
    """The two-sided `confidence` interval of each baseline error: chance's and a linear model's on the validation
    samples (and the linear model's on train-dev's), the linear model's training error on the rows it was fitted on
    (stats.model_error_interval); a baseline without its predictions (or not computed) has none."""
    val, dev = evaluation.splits["val"], evaluation.splits.get("train_dev")
    sources = {"chance_error": (val.y_true, chance_predictions(evaluation)),
               "simple_train_error": (baselines.get("simple_fit_true"), baselines.get("simple_fit_pred")),
               "simple_val_error": (val.y_true, baselines.get("simple_val_pred")),
               "simple_train_dev_error": (dev.y_true if dev is not None else None,
                                          baselines.get("simple_train_dev_pred"))}
    out = {}
    for key, (truth, pred) in sources.items():
        if baselines.get(key) is not None and truth is not None and pred is not None and 0 < len(truth) == len(pred):
            out[key] = list(stats.model_error_interval(evaluation.task, truth, pred, confidence))
    return out


def _versus_chance(evaluation: Any, pred: Optional[np.ndarray], who: str, alpha: float, scale: float,
                   split: str = "val") -> Optional[Gap]:
    """How much better than chance `pred` (n,) does on the same samples of `split`: chance's error minus its
    (paired: Newcombe's paired interval, or a paired bootstrap of the RMSE difference) as a Gap in the gate's units,
    whose `passes` says it beats chance by more than the tolerance with confidence 1 - alpha. None without
    predictions, or with non-finite ones (a diverged regression)."""
    val = evaluation.splits[split]
    if pred is None or len(pred) != val.n or not val.n:
        return None
    pred = np.asarray(pred, dtype=np.float64 if evaluation.task == "regression" else None)
    if evaluation.task == "regression" and not np.isfinite(pred).all():
        return None
    paired = stats.paired_error_difference(evaluation.task, val.y_true, pred, chance_predictions(evaluation, split),
                                           confidence=1 - 2 * alpha)
    unit = 1.0 if evaluation.task == "classification" else scale
    low, high = paired["interval"]
    return Gap(who, "chance", paired["difference"] / unit, low / unit, high / unit, alpha)


# a training loss that never fell below this many times a constant prediction's: the steps blew the weights up
BLOWN_UP = 10


def constant_loss(task: str, num_classes: int) -> float:
    """The training loss of a constant prediction: ln K for K classes (uniform probabilities; the class frequencies do
    no worse), 1 for regression (the mean of standardised targets)."""
    return math.log(num_classes) if task == "classification" and num_classes >= 2 else 1.0


def _untrained(history: Any, evaluation: Any, constant: float) -> Optional[str]:
    """Why the run did not train at all, or None: "diverged" (NaN or inf before any epoch trained well), "blown_up"
    (every epoch's training loss above BLOWN_UP times a constant prediction's: a learning rate far too big, as
    optim.lr=1e6 with Adam gives, whose loss stays finite)."""
    if history.stop_reason == "diverged" and (history.best_epoch < 1
                                              or not math.isfinite(evaluation.splits["train"].loss)):
        return "diverged"
    losses = np.asarray([r["train_loss"] for r in history.rows], dtype=float)
    finite = losses[np.isfinite(losses)]
    if finite.size and finite.min() > BLOWN_UP * constant:
        return "blown_up"
    return None


def _loss_beats_prior(evaluation: Any, split: str, alpha: float) -> Optional[dict]:
    """The network's mean cross-entropy on `split` below that of always predicting the training class shares (each
    share with half a sample added, so a class absent from training costs a finite loss), paired on the same
    samples: {difference (prior's minus the network's), interval (two-sided 1 - 2 alpha: its lower end is the
    one-sided bound; stats.mean_interval)}. None without per-sample losses."""
    held, train = evaluation.splits[split], evaluation.splits["train"]
    losses = np.asarray(held.sample_loss, dtype=np.float64) if held.sample_loss is not None else None
    if losses is None or len(losses) != held.n or held.n < 2 or not np.isfinite(losses).all():
        return None
    classes = max(int(np.max(train.y_true, initial=0)), int(np.max(held.y_true, initial=0))) + 1
    if getattr(held, "probs", None) is not None:
        classes = max(classes, np.asarray(held.probs).shape[1])
    counts = np.bincount(np.asarray(train.y_true, dtype=np.int64), minlength=classes) + 0.5
    prior_loss = -np.log(counts / counts.sum())[np.asarray(held.y_true, dtype=np.int64)]  # (n,)
    gain = prior_loss - losses
    return {"difference": float(gain.mean()), "interval": list(stats.mean_interval(gain, 1 - 2 * alpha))}


def _blow_up(history: Any, constant: float) -> Optional[tuple[int, float, str]]:
    """(epoch, training loss, words) of the first epoch whose finite training loss exceeded BLOWN_UP times a
    constant prediction's, or rose more than health.ROSE_ABOVE_FIRST above the first epoch's
    (health.rose_above_first), in a run that also had epochs below it (one with none is _untrained's "blown_up"):
    the steps were too big on the way, whatever the loss came back to (SGD at lr=1 on digits: 5.2, then 2921, then
    ln 10 with every ReLU dead, a curve that looks converged; LeNet at lr=0.5: 2.31, 2.58, then 2.33 with dead ReLUs;
    at lr=0.3 down to 0.075, then 6.59, then 2.35). None if no epoch did."""
    losses = np.asarray([r["train_loss"] for r in history.rows], dtype=float)
    finite = np.isfinite(losses)
    above = np.flatnonzero(finite & (losses > BLOWN_UP * constant))
    if above.size:
        return (int(above[0]) + 1, float(losses[above[0]]),
                f"more than {BLOWN_UP} times a constant prediction's ({_loss(constant)})")
    rose = health.rose_above_first(losses)
    if rose is not None:
        return (rose + 1, float(losses[rose]),
                f"more than {100 * health.ROSE_ABOVE_FIRST:g}% above the first epoch's ({_loss(losses[0])}), which "
                "includes the untrained start")
    return None


def _loss(value: float) -> str:
    return f"{value:.3g}"


def _underfitting(fig, evaluation, history, curves, task, tol, alpha, ref: Reference, baselines, overrides,
                  settings, notes, constant_loss: float = math.inf,
                  intervals: Optional[dict[str, list[float]]] = None, resume: Optional[str] = None) -> Finding:
    """`intervals`: the baselines' (baseline_intervals), for the reference's and chance's."""
    f = Finding()
    intervals = intervals or {}
    train = fig["train"]
    chance = baselines.get("chance_error")
    simple_val = baselines.get("simple_val_error")
    scale = float(baselines.get("target_scale", 1.0))
    tol_units = tolerance_in_units(tol, task, scale)
    target_error = ref.value if ref.kind == "target" else None
    reference, ref_name = ref.value, ref.name
    ref_interval = intervals.get(ref.source) if ref.source else None  # the target and zero are exact
    # the gap above the reference, with its one-sided (1 - alpha) lower bound
    excess = train.error - reference
    low, high = excess_interval(evaluation, ref, 1 - 2 * alpha)
    gap = Gap("reference", "train", excess, low, high, alpha)
    val = fig["val"]
    trend = curves["train_trend"]
    # no signal, confirmed by the one rule's mirror: neither the network nor a linear model beats chance on the same
    # held-out samples of the training distribution (train-dev when there is one: validation may come from
    # elsewhere, dataset.val_from, where a relation that holds in training fails) by as much as the tolerance, with
    # confidence 1 - alpha (Gap.within), and the validation curve has stopped improving (a run whose validation loss
    # is still falling is first told to train longer; the training loss may keep falling by memorising, so it does
    # not tell). Neither confirmed to beat chance nor confirmed not to (splits too small to tell): a note, not a verdict
    held, linear_held, _, held_truth, linear_pred = _linear_held_out(baselines, evaluation)
    beats = {"network": _versus_chance(evaluation, evaluation.splits[held].y_pred, "network", alpha, scale, held),
             "linear": _versus_chance(evaluation, linear_pred, "linear", alpha, scale, held)}
    eligible = (chance is not None and linear_held is not None and target_error is None
                and curves["val_trend"] not in ("falling", "short") and all(g is not None for g in beats.values()))
    # a model confirmed to beat chance at all (the lower bound above 0, if not by the tolerance) shows a relation:
    # with skewed classes (chance at 10%) a network at 4.3% is not "no usable relation"
    related = any(g is not None and g.passes(0.0) for g in beats.values())
    # or by its loss: with skewed classes the error can hardly beat always guessing the majority, while the
    # network's log-loss beats the class shares' on the same samples (0.268 against 0.367)
    loss_gain = _loss_beats_prior(evaluation, held, alpha) if task == "classification" else None
    related = related or bool(loss_gain and loss_gain["interval"][0] > 0)
    no_signal = eligible and not related and all(g.within(tol) for g in beats.values())
    unsure = eligible and not related and not no_signal and not any(g.passes(tol) for g in beats.values())
    f.stats = {"train_error": train.error, "train_error_interval": [train.low, train.high], "reference": reference,
               "reference_name": ref_name, "reference_interval": ref_interval, "excess": excess, "gap": gap.as_dict(),
               "chance_error": chance, "chance_error_interval": intervals.get("chance_error"),
               "simple_train_error": baselines.get("simple_train_error"), "train_trend": trend,
               "simple_val_error": simple_val, "simple_val_error_interval": intervals.get("simple_val_error"),
               "versus_chance": {who: g.as_dict() for who, g in beats.items() if g is not None},
               "loss_versus_class_shares": loss_gain,
               "no_signal": no_signal}
    lr = _get(settings, "optim.lr", 1e-3)
    max_epochs = _get(settings, "trainer.max_epochs", 50)
    # after a divergence: a learning rate that plausibly trains (one rule with the health findings')
    safe_lr = Action(f"lower the learning rate to {health.lower_lr(settings):g}",
                     next_command(overrides, {"optim.lr": health.lower_lr(settings)}))
    diverged = history.stop_reason == "diverged"
    untrained = _untrained(history, evaluation, constant_loss)
    spike = None if untrained else _blow_up(history, constant_loss)
    # the steps were too big at some point: every remedy that follows is tried at a learning rate that trains
    f.stats["steps_too_big"] = bool(untrained or diverged or spike or curves["train_trend"] == "diverged")
    if untrained:
        f.detected, f.severity = True, "severe"
        f.stats["untrained"] = untrained
        f.evidence.append("the training loss became NaN or infinite before any epoch trained well: the run diverged "
                          "(learning rate too big)" if untrained == "diverged" else
                          f"the training loss never fell below {_loss(constant_loss * BLOWN_UP)}, {BLOWN_UP} times a "
                          f"constant prediction's ({_loss(constant_loss)}): the steps blew the weights up (learning "
                          "rate too big)")
        f.actions.append(safe_lr)  # alone: nothing else can be judged before the run trains at all
        return f
    if diverged:  # judged on the restored best epoch: the late divergence is a note, not a verdict
        notes.append(f"the training diverged after epoch {history.best_epoch}, whose weights were restored and are "
                     f"judged here; to train further, lower the learning rate: {safe_lr.command}")
    unit = 1.0 if task == "classification" else scale
    held_fig, held_words = fig[held], "validation" if held == "val" else "train-dev"
    if held == "val":
        chance_held, chance_interval = chance, intervals.get("chance_error")
    else:  # chance on train-dev's samples, by the baselines' own rule
        chance_pred = chance_predictions(evaluation, held)
        chance_held = float(stats.model_error(task, held_truth, chance_pred))
        chance_interval = list(stats.model_error_interval(task, held_truth, chance_pred, 1 - alpha))
    versus = (f"{held_words} {'error' if task == 'classification' else 'RMSE'} "
              f"{_pct_in(held_fig.error, [held_fig.low, held_fig.high], task)} and a linear model's "
              f"{_pct_in(linear_held, intervals.get(f'simple_{held}_error'), task)} vs chance's "
              f"{_pct_in(chance_held, chance_interval, task)} on the same {held_words} samples")
    data_check = ("check the data and the labels (are inputs and labels aligned, or did a shuffle separate them? a "
                  "wrong target column? is the task learnable from these inputs?)")
    # a train-dev split tells memorising from a mismatch; a run that has one is judged on it already
    check = Action(f"{data_check}, then a train-dev split, which tells memorising from a mismatch",
                   next_command(overrides, {"split.train_dev": 0.1})) if held == "val" else None
    if no_signal:
        f.detected, f.severity = True, "severe"  # nothing to learn: the worst case there is
        f.evidence.append(f"{versus}: neither beats chance by as much as the tolerance, with confidence (the "
                          f"network's advantage, paired: {_within_words(beats['network'], task, tol, unit)}; the "
                          f"linear model's: {_within_words(beats['linear'], task, tol, unit)}), and the validation "
                          "loss stopped improving: no usable relation between the inputs and the outputs shows in "
                          "these data")
        if train.error < chance - tol_units:
            f.evidence.append(f"the training error {_pct_in(train.error, [train.low, train.high], task)} is below "
                              "chance only by memorising (which is also why validation is worse: no separate "
                              "overfitting verdict)")
        if check is not None:
            f.actions.append(check)
        else:  # nothing to run: what is left is to look at the data
            f.evidence.append(f"what is left: {data_check}")
        return f
    if unsure:
        f.stats["signal_unconfirmed"] = {"action": asdict(check) if check is not None else None}
        confirmed_not = [who for who in ("network", "linear") if beats[who].within(tol)]
        names = {"network": "the network", "linear": "the linear model"}
        if confirmed_not:  # one of the two is confirmed not to beat chance, the other is not known either way
            other = next(who for who in names if who not in confirmed_not)
            either = (f"{names[confirmed_not[0]]} is confirmed not to, {names[other]} is not known either way "
                      "(these splits are too small to tell)")
        else:
            either = "nor is either confirmed not to (these splits are too small to tell)"
        notes.append(f"{versus}: neither is confirmed to beat chance by more than the tolerance (the network's "
                     f"advantage, paired: {_gap_words(beats['network'], task, tol, unit)}, "
                     f"{_upper_words(beats['network'], task, tol, unit)}; the linear model's: "
                     f"{_gap_words(beats['linear'], task, tol, unit)}, {_upper_words(beats['linear'], task, tol, unit)}"
                     f"); {either}: the inputs may carry no usable relation to the outputs; "
                     + (f"{check.text}: {check.command}" if check is not None else data_check))
    if ref.kind == "target" and math.isfinite(high) and high < 0:  # below the best achievable, with confidence
        notes.append(f"the training error {_pct_in(train.error, [train.low, train.high], task)} is below "
                     f"report.target_error ({_pct(reference, task)}) with confidence: the target is above what this "
                     "model reaches on its own training data (a human-level estimate that is too high, or a network "
                     "that memorises its training rows: compare validation)")
    if not gap.passes(tol_units):
        return f
    f.detected = True
    f.severity = _severity(gap, tol_units)
    f.evidence.append(f"training error {_pct_in(train.error, [train.low, train.high], task)} vs {ref_name} "
                      f"{_pct_in(reference, ref_interval, task)}: "
                      + _gap_words(Gap("reference", "train", excess / scale, low / scale, high / scale, alpha), task,
                                   tol, scale))
    if chance is not None:
        f.evidence.append("chance level (always the majority class / the mean) is "
                          f"{_pct_in(chance, intervals.get('chance_error'), task)}")
    regularised = _regularised(settings)
    less_reg = Action("less regularisation (weight decay, dropout, L1)", next_command(overrides, _less_reg(settings)))
    raised = health.raise_lr(settings)
    raise_lr = Action(f"raise the learning rate to {raised:g}", next_command(overrides, {"optim.lr": raised}))
    if history.stop_reason == "baseline":  # more epochs would stop at the same one: without the baseline
        baseline = _get(settings, "early_stop.baseline", None)
        longer = Action(f"train longer: without early_stop.baseline={baseline:g}, which stopped the run at epoch "
                        f"{history.epochs_run} because the monitored metric had not beaten it",
                        next_command(overrides, {"early_stop.baseline": None}))
    elif history.stop_reason == "threshold":  # the monitored metric beat early_stop.stopping_threshold
        threshold = _get(settings, "early_stop.stopping_threshold", None)
        longer = Action(f"train longer: without early_stop.stopping_threshold={threshold:g}, which stopped the run "
                        f"at epoch {history.epochs_run} once the monitored metric beat it",
                        next_command(overrides, {"early_stop.stopping_threshold": None}))
    elif history.stop_reason == "interrupted" and resume and history.epochs_run < max_epochs:
        # a new run of twice the epochs would start again from scratch: the interrupted one continues
        longer = Action(f"train longer: resume the interrupted run for its remaining {max_epochs - history.epochs_run}"
                        " epochs", resume)
    else:
        longer = Action("train longer", next_command(overrides, {"trainer.max_epochs": 2 * max_epochs,
                                                                 **_lift(history)}))
    bigger = Action("a bigger model", next_command(overrides, _bigger_model(settings)))
    if spike:  # whatever shape the curve took afterwards, it was not the model's capacity or its epochs
        epoch, value, above = spike
        f.evidence.append(f"the training loss rose to {_loss(value)} at epoch {epoch}, {above}: the learning rate is "
                          "too big (units it pushed into a dead or saturated zone may not recover at that rate)")
        f.actions += [safe_lr, less_reg] if regularised else [safe_lr]
    elif trend == "short":
        f.evidence.append("the run trained for a single epoch: too short for its learning curve to say why")
        f.actions += [longer] + ([less_reg] if regularised else [])
    elif trend in ("oscillating", "diverged"):
        f.evidence.append(f"the training loss is {trend}: the learning rate is likely too big")
        f.actions += [safe_lr, less_reg] if regularised else [safe_lr]
    elif trend == "falling":
        if history.stop_reason == "patience":  # more epochs alone would stop at the same one: more patience
            patience = int(_get(settings, "early_stop.patience", 5))
            f.evidence.append(f"the training loss was still falling when early stopping stopped the run (the "
                              f"validation metric had not improved for {patience} epochs): the training data is not "
                              "yet fitted")
            longer = Action("train longer: more patience for early stopping",
                            next_command(overrides, {"early_stop.patience": patience + max(patience, 5)}))
        elif history.stop_reason == "interrupted":
            f.evidence.append(f"the training loss was still falling when the run was interrupted at epoch "
                              f"{history.epochs_run} of {max_epochs}")
        else:
            f.evidence.append("the training loss was still falling at the last epoch: training stopped too early")
        # a learning rate far below the optimizer's usual one (raise_lr jumps more than 10x to it) makes every step
        # small: the usual rate, in as many epochs, comes before more epochs of small steps
        small_steps = raised > 10 * lr * (1 + 1e-9)
        if small_steps:
            f.evidence.append(f"the learning rate {lr:g} is more than ten times below the optimizer's usual "
                              f"{raised:g}: its steps are small")
        f.actions += ([raise_lr, longer] if small_steps else [longer, raise_lr]) + ([less_reg] if regularised else [])
    elif trend == "flat":
        f.evidence.append("the training loss barely moved from the first epoch: the learning rate is too small"
                          + (" or the regularisation too strong" if regularised else ""))
        f.actions += ([less_reg, raise_lr] if regularised else [raise_lr]) + [bigger]
    else:  # converged, high
        f.stats["converged_causes"] = ["too little capacity"] + (["too much regularisation"] if regularised else [])
        f.evidence.append(_converged_words(f.stats["converged_causes"]))
        f.actions += ([less_reg] if regularised else []) + [bigger, raise_lr]
    return f


def _converged_words(causes: list[str]) -> str:
    """The converged-high curve's sentence with its likely causes (none left: the bare observation)."""
    return "the training loss converged at a high value" + (": " + " or ".join(causes) if causes else "")


def _overfitting(fig, evaluation, history, curves, task, tol, alpha, overrides, settings, scale) -> Finding:
    f = Finding()
    held_out = "train_dev" if "train_dev" in fig else "val"
    train, other = fig["train"], fig[held_out]
    gap = _gap(evaluation, "train", held_out, alpha, scale, tol)
    u = curves.get("u_curve") or {}
    f.stats = {"held_out": held_out, "gap": gap.as_dict(), "best_epoch": history.best_epoch,
               "val_min_epoch": curves.get("val_min_epoch"), "epochs_run": history.epochs_run,
               "val_loss_rise": u.get("relative_rise"), "val_loss_rising": u.get("rising"),
               "gap_growing": u.get("gap_growing")}
    if not gap.passes(tol):
        return f
    f.detected, f.severity = True, _severity(gap, tol)
    f.evidence.append(f"{held_out} error {_fig(other, task)} vs training error {_fig(train, task)}: "
                      + _gap_words(gap, task, tol, scale))
    if u and u.get("rising"):
        f.evidence.append(f"validation loss was lowest at epoch {u['best_epoch']} and rose by "
                          f"{100 * u['relative_rise']:.0f}% over the next {u['epochs_after_best']} epochs (a fitted "
                          f"upward trend, one-sided p = {u['rise_p']:.2g}; the U-curve"
                          + (": early stopping hid part of it)" if history.stop_reason == "patience" else ")"))
    if u and u.get("gap_growing"):
        f.evidence.append("the gap between validation and training loss grew after the best epoch (a fitted upward "
                          f"trend, one-sided p = {u['gap_p']:.2g})")
    f.actions += _more_regularisation(settings, overrides)
    smaller = _smaller_model(settings)
    if smaller:
        f.actions.append(Action("less capacity", next_command(overrides, smaller)))
    more_data = _more_data(settings)
    if more_data:
        f.actions.append(Action(more_data[0], next_command(overrides, more_data[1])))
    return f


MAX_SUGGESTED_DROPOUT = 0.5  # "more regularisation" raises dropout up to this, never lowers one above it


def _more_regularisation(settings: dict, overrides: list[str]) -> list[Action]:
    """Overfitting's first remedies, each more than the run has: weight decay x10 (at least 1e-4), dropout +0.2 up
    to MAX_SUGGESTED_DROPOUT (left alone at or above it), input noise x2 (at least 0.1)."""
    reg = settings.get("reg", {})
    wd, dropout = reg.get("weight_decay", 0.0) or 0.0, reg.get("dropout", 0.0) or 0.0
    changes: dict[str, Any] = {"reg.weight_decay": max(1e-4, wd * 10)}
    if dropout < MAX_SUGGESTED_DROPOUT:
        changes["reg.dropout"] = min(MAX_SUGGESTED_DROPOUT, round(dropout + 0.2, 2))
        text = "more regularisation: weight decay and dropout"
    else:
        text = f"more regularisation: weight decay (dropout is {dropout:g} already)"
    return [Action(text, next_command(overrides, changes)),
            Action("data augmentation / noise injection",
                   next_command(overrides, {"reg.augment.noise": more_noise(settings, 0.1)}))]


def more_noise(settings: dict, at_least: float) -> float:
    """Input noise for a next run: twice the run's own, at least `at_least` (never less than the run has)."""
    return max(at_least, round(2 * float(_get(settings, "reg.augment.noise", 0.0) or 0.0), 3))


def _more_data(settings: dict) -> Optional[tuple[str, dict]]:
    """(text, changes) for a larger training split: 80/10/10; under k-fold (split.folds, where split.train and
    split.val do nothing) twice the folds, up to 10, so that each fold trains on more rows; None past that."""
    folds = int(_get(settings, "split.folds", 0) or 0)
    if folds >= 2:
        if folds >= 10:
            return None
        more = min(10, 2 * folds)
        return (f"more data: {more} folds, each training on {(more - 1) / more:.0%} of what the test split leaves "
                f"(now {(folds - 1) / folds:.0%})", {"split.folds": more})
    return "more data: a larger training split", {"split.train": 0.8, "split.val": 0.1, "split.test": 0.1}


def _data_mismatch(fig, evaluation, task, tol, alpha, overrides, scale, settings: dict) -> Finding:
    """Validation worse than train-dev (same distribution as train, never trained on): the validation data differ
    from the training data (Ng's data mismatch). Needs split.train_dev > 0 (or dataset.val_from)."""
    f = Finding()
    if "train_dev" not in fig:
        return f
    gap = _gap(evaluation, "train_dev", "val", alpha, scale, tol)
    f.stats = {"gap": gap.as_dict()}
    if not gap.passes(tol):
        return f
    f.detected, f.severity = True, _severity(gap, tol)
    f.evidence.append(f"validation error {_fig(fig['val'], task)} vs train-dev error "
                      f"{_fig(fig['train_dev'], task)} (train-dev comes from the training distribution and "
                      "was never trained on): " + _gap_words(gap, task, tol, scale))
    f.actions.append(Action("make the training data more like the validation data: look at the validation "
                            "errors by hand, then synthesise or collect training data like them; meanwhile, input "
                            "noise makes the model less sensitive to small changes of its inputs",
                            next_command(overrides, {"reg.augment.noise": more_noise(settings, 0.1)})))
    return f


def _shares_words(shares: list[dict], task: str, alpha: float) -> str:
    """Classes whose share moved from training to test (evidence.share_changes): each share with its interval, and
    their ratio with the interval that confirms it beyond 2x (at the Bonferroni level)."""
    return "; ".join(f"{c['name']}: {_rate_in(c['train_count'], c['train_n'], alpha, task)} of the {c['train_n']} "
                     f"training samples -> {_rate_in(c['test_count'], c['test_n'], alpha, task)} of the "
                     f"{c['test_n']} test samples (its share x{c['ratio']:.2g}, {100 * (1 - 2 * c['level']):.3g}% "
                     f"interval [{c['low']:.2g}, {c['high']:.2g}])" for c in shares)


def _shift(fig, evaluation, history, task, tol, alpha, overrides, tests, table, scale, notes,
           settings: Optional[dict] = None, mismatch_detected: bool = False) -> Finding:
    """Test worse than validation (labels), with the label-free tests as evidence of why.

    alpha is split: alpha/2 for the error gap, alpha/2 for the label-free family (each test at alpha/2 over their
    number, Bonferroni: evidence.shift_tests), so an unshifted run raises this finding at most alpha of the time
    (benchmarks/calibrate_diagnosis.py measures it). Validation chose the epoch, so its error is optimistic: that
    selection bias is part of the val-to-test gap and is absorbed by the tolerance, which the gap's lower bound must
    exceed."""
    settings = settings or {}
    from dlrun.report import evidence

    f = Finding()
    val, test = fig["val"], fig["test"]
    gap = _gap(evaluation, "val", "test", alpha / 2, scale, tol)
    fired = [t for t in tests.values() if t["fires"]]
    fired_names = {t["name"] for t in fired}
    degraded = gap.passes(tol)
    shares = evidence.share_changes(table, alpha / 2) if table is not None else []
    f.stats = {"gap": gap.as_dict(), "tests_fired": sorted(fired_names),
               "test_level": next(iter(tests.values()))["level"] if tests else None,
               "selection_bias": "validation chose the epoch, so its error is optimistic; the val-to-test gap "
                                 "includes that bias, absorbed by the tolerance"}
    if not degraded:
        if fired:
            moved = ("; the class shares moved (" + _shares_words(shares, task, alpha) + ")") if shares else ""
            if mismatch_detected:  # test comes from the training distribution, validation does not
                meaning = ("the validation split is the one that differs from the training data (the data-mismatch "
                           "finding), the test split less so")
            elif math.isfinite(gap.high) and gap.high < 0:
                meaning = "the test error is lower than validation's with confidence: the test samples are easier"
            else:
                meaning = ("no degradation confirmed: a shift the model tolerates, or one that costs less than these "
                           "splits can confirm")
            notes.append("the test split differs from the validation split (" + "; ".join(
                f"{t['what']}: p = {t['p_value']:.2g} < {t['level']:.2g}" for t in fired) + f"){moved}, but the test "
                f"error {_fig(test, task)} is not worse than validation's {_fig(val, task)} by more than the "
                "tolerance with confidence (" + _gap_words(gap, task, tol, scale) + _blind_zone(gap, evaluation, task)
                + f"): {meaning}")
        return f
    f.detected = True
    f.severity = _severity(gap, tol)
    f.evidence.append(f"test error {_fig(test, task)} vs validation error {_fig(val, task)}: "
                      + _gap_words(gap, task, tol, scale))
    for t in fired:
        f.evidence.append(f"{t['what']}: p = {t['p_value']:.2g} < {t['level']:.2g} ({t['detail']})")
    if not fired:
        bound = _selection_optimism(val, history.epochs_run, alpha)  # in the figures' units
        if math.isfinite(gap.low) and gap.low <= (bound if task == "classification" else bound / scale):
            why = ("the validation split may have been overfit by early stopping or model selection (its error is "
                   "optimistic), or p(y|x) changed")
        else:  # E[max of E Gaussians of sd s] <= s sqrt(2 ln E), whatever their correlation
            why = (f"the gap is too large for the choice of the best of {history.epochs_run} epochs on {val.n} "
                   f"validation samples to explain (that optimism is at most about {_pct(bound, task)}): like inputs "
                   "have other labels in test (p(y|x) changed), or the inputs changed in a way these tests miss")
        f.evidence.append("no label-free test between validation and test inputs fires: " + why)
    if table is not None:
        worst = evidence.worst_classes(table, tol, alpha / 2)
        if worst:  # confirmed by the one rule per class, at alpha/K (evidence.worst_classes; stats.classes)
            f.stats["classes"] = worst
            f.evidence.append("systematic errors in classes: " + "; ".join(
                f"{c['name']}: {_rate_in(c['val_wrong'], c['val_n'], alpha, task)} of {c['val_n']} wrong on "
                f"validation -> {_rate_in(c['test_wrong'], c['test_n'], alpha, task)} of {c['test_n']} on test"
                for c in worst))
        if shares:  # moved beyond 2x by the one rule per class, at alpha/K (evidence.share_changes; stats.shares)
            f.stats["shares"] = shares
            f.evidence.append("classes over/under-represented in test vs train: " + _shares_words(shares, task, alpha))
    # label shift only when the predicted classes moved and the inputs (features, softmax) did not, or the true
    # class shares moved (confirmed beyond 2x)
    label_shift = ("label_shift" in fired_names and not fired_names & {"ks_softmax", "mmd_features"}) or bool(shares)
    if label_shift:
        f.actions.append(Action("the class priors changed: reweight the classes to the test priors or resample "
                                "the training data; a train-dev split separates variance from mismatch",
                                next_command(overrides, {"split.train_dev": 0.1})))
    elif not fired_names & {"ks_softmax", "mmd_features"}:
        pass  # no test says the inputs moved: an augmentation against changed inputs has nothing to aim at
    elif health.fits({"reg.augment.rotation": 15}, settings):
        f.actions.append(Action("augment the training data (noise, rotation) so the model is less sensitive to "
                                "changed inputs; better, with the change you find in the test data",
                                next_command(overrides, {"reg.augment.noise": more_noise(settings, 0.3),
                                                         "reg.augment.rotation": 15})))
    else:  # rotation is for images; a table or a sequence gets input noise
        f.actions.append(Action("augment the training data with input noise (the augmentation for tables and "
                                "sequences) so the model is less sensitive to changed inputs",
                                next_command(overrides, {"reg.augment.noise": more_noise(settings, 0.3)})))
    errors = "the per-class errors" if task == "classification" else "its largest residuals (the residuals figure)"
    if "train_dev" in fig:
        f.actions.append(Action(f"review the test data and {errors}, and how the test data were collected",
                                next_command(overrides, {"split.train_dev": 0.1})))
    else:
        f.actions.append(Action(f"review the test data and {errors}; a train-dev split separates variance from "
                                "data mismatch", next_command(overrides, {"split.train_dev": 0.1})))
    return f


def _selection_optimism(val: Any, epochs: int, alpha: float) -> float:
    """An upper bound on how optimistic validation's error is after choosing the best of `epochs` epochs on it:
    sigma sqrt(2 ln epochs), sigma the standard error of validation's error (from its 1 - alpha interval's width),
    the bound on the expected maximum of that many Gaussians whatever their correlation. In the figures' units (a
    fraction, or the RMSE in the target's units)."""
    from scipy.stats import norm

    if epochs < 2 or not (math.isfinite(val.low) and math.isfinite(val.high)):
        return 0.0 if epochs < 2 else math.inf
    sigma = (val.high - val.low) / (2 * norm.ppf(1 - alpha / 2))
    return float(sigma * math.sqrt(2 * math.log(epochs)))

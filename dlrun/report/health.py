"""Training-health findings from the probes (dynamics.csv) and the loss curve: vanishing and exploding gradients,
dying ReLU, saturated units, an oscillating loss (by the rule of the report's curve trend, stats.oscillation), slow
convergence; each with its evidence and actions that are real
config keys (DeepDiagnosis, ICSE 2022, maps such symptoms to fixes).

Thresholds follow AutoTrainer (ICSE 2021): a first-to-last-layer gradient-norm ratio below 1e-3 is vanishing, above
70 exploding; 70% of a layer's units dead is dying ReLU. They are heuristics, not statistical tests: the findings
are reported as "training health", with the measured values, and they rank the causes of an underfitting verdict
(diagnosis.py); they never make a verdict of their own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Callable, Optional

import numpy as np

from dlrun.report import stats
from dlrun.report.settings import get as _get

VANISHING_RATIO = 1e-3  # first layer's gradient norm / last layer's (AutoTrainer)
EXPLODING_RATIO = 70.0
EXPLODING_GROWTH = 1e3  # the largest gradient norm grew this much from the first probe
DEAD_FRACTION = 0.7  # of a ReLU layer's units, at the last probe (AutoTrainer's 70% zero gradients)
SATURATED_FRACTION = 0.7  # of a sigmoid/tanh layer's units
SLOW_DROP = 0.1  # the training loss never fell this share below its first epoch's
MIN_EPOCHS = 5  # curve-based findings need this many epochs
ROSE_ABOVE_FIRST = 0.1  # an epoch's mean training loss this far above the first epoch's: uphill steps (too big)


@dataclass
class HealthFinding:
    name: str  # vanishing_gradients | exploding_gradients | dying_relu | saturation | oscillating_loss | slow_convergence
    evidence: str
    changes: list[dict[str, Any]] = field(default_factory=list)  # config changes to try, best first
    texts: list[str] = field(default_factory=list)  # why each change, same order


# the findings that name a cause of underfitting and lead its actions; an oscillating or slowly falling loss is a
# symptom the underfitting finding already reads from the curve (train longer, a higher learning rate)
CAUSES = ("exploding_gradients", "vanishing_gradients", "dying_relu", "saturation")


def default_lr(settings: dict) -> float:
    """The optimizer's usual learning rate: 1e-2 for SGD, 1e-3 for the adaptive ones."""
    return 1e-2 if _get(settings, "optim.name", "adam") == "sgd" else 1e-3


def raise_lr(settings: dict) -> float:
    """A learning rate for a run whose steps were too small: ten times the one used, or the optimizer's usual one
    when that is higher (optim.lr=1e-7 gets 1e-3 in one run, not four runs of ten times)."""
    lr = float(_get(settings, "optim.lr", 1e-3))
    return float(f"{max(lr * 10, default_lr(settings)):.3g}")


def lower_lr(settings: dict) -> float:
    """A learning rate that plausibly trains after trouble: a tenth of the one used, but never above the optimizer's
    usual default (an lr of 1e9 gets the default, not 1e8)."""
    lr = float(_get(settings, "optim.lr", 1e-3))
    return float(f"{min(lr / 10, default_lr(settings)):.3g}")


# remedies that tame big steps themselves (exploding gradients): they let the run's learning rate train
TAME_STEPS = ("trainer.grad_clip", "reg.batchnorm")


def at_safe_lr(change: dict[str, Any], settings: dict) -> dict[str, Any]:
    """A symptom's remedy for a run whose steps were too big (its loss blew up or diverged): tried at lower_lr's
    learning rate, since a leaky ReLU at the rate that killed the ReLUs diverges too; unless it sets the rate itself
    or tames the steps (clipping, batch normalisation: at SGD lr=0.6 on digits they reach 5.6% and 2.2%, and a
    lower rate as well would change two things at once)."""
    if "optim.lr" in change or any(key in change for key in TAME_STEPS):
        return change
    return {"optim.lr": lower_lr(settings), **change}


def rose_above_first(loss: np.ndarray) -> Optional[int]:
    """The 0-based index of the first epoch whose finite training loss is more than ROSE_ABOVE_FIRST above the first
    epoch's, or None: the first epoch's mean includes the untrained start, so a later one above it took uphill
    steps (the one rule for the underfitting finding's "steps too big" and slow convergence's "not slow")."""
    loss = np.asarray(loss, dtype=np.float64)
    if len(loss) < 2 or not np.isfinite(loss[0]) or loss[0] <= 0:
        return None
    rose = np.flatnonzero(np.isfinite(loss[1:]) & (loss[1:] > (1 + ROSE_ABOVE_FIRST) * loss[0])) + 1
    return int(rose[0]) if rose.size else None


def _weights(dynamics: list[dict]) -> dict[int, list[dict]]:
    by_epoch: dict[int, list[dict]] = {}
    for row in dynamics:
        if row["kind"] == "weight":
            by_epoch.setdefault(int(row["epoch"]), []).append(row)
    return by_epoch


def _ratios(dynamics: list[dict]) -> list[float]:
    """first layer's gradient norm / last layer's, per probed epoch (finite ones)."""
    out = []
    for rows in _weights(dynamics).values():
        first, last = float(rows[0]["grad_norm"]), float(rows[-1]["grad_norm"])
        if len(rows) > 1 and math.isfinite(first) and math.isfinite(last) and last > 0:
            out.append(first / last)
    return out


def vanishing(dynamics, rows, settings) -> list[HealthFinding]:
    ratios = _ratios(dynamics)
    if not ratios or float(np.median(ratios)) >= VANISHING_RATIO:
        return []
    act = _get(settings, "model.activation")
    changes = ([{"model.activation": "relu"}] if act in ("sigmoid", "tanh") else []) + \
        [{"model.init": "kaiming" if act not in ("sigmoid", "tanh") else "xavier"}, {"reg.batchnorm": True},
         {"model": "resnet"}]
    texts = (["a non-saturating activation lets gradients through"] if act in ("sigmoid", "tanh") else []) + \
        ["an initialisation that keeps the activations' scale across layers",
         "batch normalisation after each layer", "a residual architecture (skip connections carry the gradient)"]
    return [HealthFinding("vanishing_gradients",
                          f"the first layer's gradient norm is {np.median(ratios):.1e} times the last layer's (median "
                          f"over {len(ratios)} probes; below {VANISHING_RATIO:g} the first layers barely learn)",
                          changes, texts)]


def exploding(dynamics, rows, settings) -> list[HealthFinding]:
    weights = _weights(dynamics)
    if not weights:
        return []
    nonfinite = [e for e, rs in weights.items() if any(int(r["nonfinite"]) for r in rs)]
    largest = {e: max((float(r["grad_norm"]) for r in rs if math.isfinite(float(r["grad_norm"]))), default=math.nan)
               for e, rs in weights.items()}
    epochs = sorted(largest)
    first = largest[epochs[0]]
    growth = max((largest[e] / first for e in epochs if first > 0 and math.isfinite(largest[e])), default=1.0)
    ratio = max(_ratios(dynamics), default=0.0)
    why = []
    if nonfinite:
        why.append(f"non-finite gradients or weights from epoch {nonfinite[0]}")
    if growth > EXPLODING_GROWTH:
        why.append(f"the largest layer gradient norm grew {growth:.1e} times from epoch {epochs[0]}")
    if ratio > EXPLODING_RATIO:
        why.append(f"the first layer's gradient norm reached {ratio:.0f} times the last layer's (above "
                   f"{EXPLODING_RATIO:g})")
    if not why:
        return []
    changes = [{"trainer.grad_clip": 1.0}, {"optim.lr": lower_lr(settings)}, {"reg.batchnorm": True}]
    texts = ["clip the gradients' norm", "a lower learning rate", "batch normalisation"]
    return [HealthFinding("exploding_gradients", "; ".join(why), changes, texts)]


def _last_activations(dynamics) -> list[dict]:
    acts = [r for r in dynamics if r["kind"] == "activation"]
    if not acts:
        return []
    last = max(int(r["epoch"]) for r in acts)
    return [r for r in acts if int(r["epoch"]) == last]


def dying_relu(dynamics, rows, settings) -> list[HealthFinding]:
    dead = [(r["layer"], float(r["dead_fraction"])) for r in _last_activations(dynamics)
            if math.isfinite(float(r["dead_fraction"])) and float(r["dead_fraction"]) >= DEAD_FRACTION]
    if not dead:
        return []
    # kaiming zeroes the biases unless model.init_bias sets them: only a run that sets them needs it undone
    biases = {"model.init_bias": None} if _get(settings, "model.init_bias", None) is not None else {}
    changes = [{"model.activation": "leaky_relu"}, {"model.init": "kaiming", **biases}]
    texts = ["a leaky ReLU keeps a gradient for negative inputs", "He initialisation with zero biases"]
    changes.append({"optim.lr": lower_lr(settings)})
    texts.append("a lower learning rate (large steps push units into the dead zone)")
    layers = ", ".join(f"{name} {100 * frac:.0f}%" for name, frac in dead)
    return [HealthFinding("dying_relu", f"ReLU units that output 0 for every sample of the probed batch: {layers} "
                                        f"(at least {100 * DEAD_FRACTION:.0f}% is dying ReLU)", changes, texts)]


def saturation(dynamics, rows, settings) -> list[HealthFinding]:
    sat = [(r["layer"], float(r["saturated_fraction"])) for r in _last_activations(dynamics)
           if math.isfinite(float(r["saturated_fraction"])) and float(r["saturated_fraction"]) >= SATURATED_FRACTION]
    if not sat:
        return []
    layers = ", ".join(f"{name} {100 * frac:.0f}%" for name, frac in sat)
    return [HealthFinding("saturation", f"sigmoid/tanh units saturated (beyond 99% of their range for 90% of the "
                                        f"probed batch): {layers}",
                          [{"model.activation": "relu"}, {"model.init": "xavier"}, {"reg.batchnorm": True}],
                          ["a non-saturating activation", "Glorot initialisation keeps inputs in the linear range",
                           "batch normalisation"])]


def oscillating(dynamics, rows, settings) -> list[HealthFinding]:
    """The training loss zigzags at the end of the run: stats.oscillation, the rule of the report's curve trend."""
    loss = np.array([r["train_loss"] for r in rows], dtype=float)
    if len(loss) < MIN_EPOCHS or not np.isfinite(loss).all():
        return []
    zigzag = stats.oscillation(loss)
    if not zigzag["oscillating"]:
        return []
    batch = _get(settings, "trainer.batch_size")
    changes = [{"optim.lr": lower_lr(settings)}] + ([{"trainer.batch_size": 2 * batch}] if batch else [])
    return [HealthFinding("oscillating_loss", f"over the last {zigzag['epochs']} epochs the training loss changes "
                                              f"direction at {100 * zigzag['flips']:.0f}% of the steps, by "
                                              f"{100 * zigzag['of_level']:.0f}% of its level and "
                                              f"{100 * zigzag['of_range']:.0f}% of the range it covered on average",
                          changes, ["a lower learning rate", "larger batches (less gradient noise)"][:len(changes)])]


def slow(dynamics, rows, settings) -> list[HealthFinding]:
    loss = np.array([r["train_loss"] for r in rows], dtype=float)
    if len(loss) < MIN_EPOCHS or not np.isfinite(loss).all() or loss[0] <= 0:
        return []
    # how far it ever fell below its first epoch's: a loss that fell far and came back up (or rose above its start:
    # uphill steps) did not converge slowly, its steps were too big, which a higher rate would make worse
    drop = float((loss[0] - loss.min()) / loss[0])
    if drop >= SLOW_DROP or rose_above_first(loss) is not None:
        return []
    lr = _get(settings, "optim.lr")
    changes = ([{"optim.lr": raise_lr(settings)}] if lr else []) + [{"reg.batchnorm": True}]
    return [HealthFinding("slow_convergence", f"the training loss never fell more than {100 * drop:.1f}% below its "
                          f"first epoch's in {len(loss)} epochs", changes,
                          ["a higher learning rate", "batch normalisation"][-len(changes):])]


DETECTORS: tuple[Callable[..., list[HealthFinding]], ...] = (exploding, vanishing, dying_relu, saturation,
                                                              oscillating, slow)


def fits(change: dict[str, Any], settings: dict) -> bool:
    """A suggested change this run can take: model.* keys that the chosen model has (unless the change picks another
    model), and image-only models and augmentations only for image inputs (settings["data"]["in_shape"])."""
    from dlrun.data.augment import IMAGE_ONLY

    in_shape = _get(settings, "data.in_shape")
    image = in_shape is None or len(in_shape) == 3
    model = settings.get("model") or {}
    for key, value in change.items():
        if key == "model" and value not in ("mlp", "lstm", "gru") and not image:
            return False
        if key.startswith("model.") and "model" not in change and model and key.split(".", 1)[1] not in model:
            return False
        if key.startswith("reg.augment.") and key.rsplit(".", 1)[1] in IMAGE_ONLY and not image:
            return False
    return True


def check(dynamics: list[dict], rows: list[dict], settings: dict) -> list[HealthFinding]:
    """Every training-health finding, most telling first (exploding before vanishing: a blow-up explains the rest)."""
    found = [f for detector in DETECTORS for f in detector(dynamics, rows, settings)]
    for f in found:  # only the remedies this run's model and data can take (no model.activation for AlexNet)
        kept = [(change, text) for change, text in zip(f.changes, f.texts) if fits(change, settings)]
        f.changes, f.texts = [c for c, _ in kept], [t for _, t in kept]
    names = {f.name for f in found}
    if "exploding_gradients" in names:
        found = [f for f in found if f.name != "oscillating_loss"]  # the same symptom, one cause
    if "oscillating_loss" in names:
        found = [f for f in found if f.name != "slow_convergence"]  # it goes nowhere because it goes back and forth
    if "dying_relu" in names:
        found = [f for f in found if f.name != "vanishing_gradients"]  # dead units pass no gradient: the cause
    return found

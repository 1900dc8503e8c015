"""Generated data for controlled experiments; the same dataset.seed always gives the same data.

dataset.task picks the generator:
- classification: scikit-learn's make_classification. n_informative of the n_features carry the signal, the
  rest is Gaussian noise (no redundant or repeated features, so the count means what it says). flip_y=0; instead
  a fraction dataset.label_noise of the labels is replaced by a uniformly random class (possibly the same one),
  so the share of wrong labels is label_noise * (K - 1) / K.
- regression: make_regression, Gaussian noise of std dataset.noise on the targets.
- sequence: (N, seq_len, n_features) noisy sinusoids whose frequency is the class. Class k completes
  1 + k * class_sep cycles over the sequence; every sample and channel has its own random phase in [0, 2 pi) and
  amplitude in [0.5, 1.5], plus Gaussian noise of std dataset.noise at every step. A uniform phase makes the
  distribution of any single time step the same for every class, so the class can only be learnt from how the
  values change over time. label_noise applies as for classification. Measured with conf/dataset/synthetic_sequence
  (2000 x 20 x 2, noise 0.5, 3 classes), 5-fold cross-validated accuracy: logistic regression on one step 0.34 and
  on the flattened sequence 0.35 (chance 0.33); scikit-learn's MLPClassifier(128) on the flattened sequence 0.999.
"""

from __future__ import annotations

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset
from dlrun.errors import DlrunError

TASKS = ("classification", "regression", "sequence")


@register_dataset("synthetic")
def load_synthetic(cfg) -> Source:
    _check(cfg)
    if cfg.task == "classification":
        return _classification(cfg)
    if cfg.task == "regression":
        return _regression(cfg)
    return _sequence(cfg)


def _classification(cfg) -> Source:
    from sklearn.datasets import make_classification

    x, y = make_classification(n_samples=cfg.n_samples, n_features=cfg.n_features, n_informative=cfg.n_informative,
                               n_redundant=0, n_repeated=0, n_classes=cfg.n_classes, class_sep=cfg.class_sep,
                               flip_y=0.0, random_state=cfg.seed)
    y = _replace_labels(y, cfg.label_noise, cfg.n_classes, np.random.default_rng(cfg.seed))
    description = (f"make_classification: {cfg.n_samples} samples, {cfg.n_features} features "
                   f"({cfg.n_informative} informative), {cfg.n_classes} classes, class_sep={cfg.class_sep}, "
                   f"label_noise={cfg.label_noise}")
    return Source(x=x.astype(np.float32), y=y.astype(np.int64), task="classification",
                  class_names=[str(k) for k in range(cfg.n_classes)], description=description)


def _regression(cfg) -> Source:
    from sklearn.datasets import make_regression

    x, y = make_regression(n_samples=cfg.n_samples, n_features=cfg.n_features,
                           n_informative=min(cfg.n_informative, cfg.n_features), noise=cfg.noise,
                           random_state=cfg.seed)
    description = (f"make_regression: {cfg.n_samples} samples, {cfg.n_features} features "
                   f"({min(cfg.n_informative, cfg.n_features)} informative), noise std {cfg.noise}")
    return Source(x=x.astype(np.float32), y=y.astype(np.float32), task="regression", class_names=[],
                  description=description)


def _sequence(cfg) -> Source:
    rng = np.random.default_rng(cfg.seed)
    n, steps, channels = cfg.n_samples, cfg.seq_len, cfg.n_features
    cycles = 1.0 + cfg.class_sep * np.arange(cfg.n_classes)  # (K,) cycles over the whole sequence
    y = rng.permutation(np.arange(n) % cfg.n_classes)  # balanced classes
    amplitude = rng.uniform(0.5, 1.5, size=(n, 1, channels))
    phase = rng.uniform(0.0, 2 * np.pi, size=(n, 1, channels))
    t = np.arange(steps)[None, :, None] / steps  # (1, T, 1) in [0, 1)
    x = amplitude * np.sin(2 * np.pi * cycles[y][:, None, None] * t + phase)  # (N, T, F)
    x += rng.normal(0.0, cfg.noise, size=x.shape)
    y = _replace_labels(y, cfg.label_noise, cfg.n_classes, rng)
    description = (f"noisy sinusoids: {n} sequences of {steps} steps x {channels} channels, {cfg.n_classes} "
                   f"classes by frequency ({', '.join(f'{c:g}' for c in cycles)} cycles), noise std {cfg.noise}, "
                   f"label_noise={cfg.label_noise}")
    return Source(x=x.astype(np.float32), y=y.astype(np.int64), task="classification",
                  class_names=[f"cycles={c:g}" for c in cycles], description=description)


def _replace_labels(y: np.ndarray, fraction: float, n_classes: int, rng: np.random.Generator) -> np.ndarray:
    """Replace round(fraction * N) labels, chosen at random, by a uniformly random class."""
    y = y.copy()
    chosen = rng.choice(len(y), size=round(fraction * len(y)), replace=False)
    y[chosen] = rng.integers(0, n_classes, size=len(chosen))
    return y


def _check(cfg) -> None:
    """The generators' own limits, said in dataset.* keys (scikit-learn's messages name its arguments)."""
    def require(ok: bool, message: str) -> None:
        if not ok:
            raise DlrunError(f"dataset=synthetic: {message}")

    require(cfg.task in TASKS, f"dataset.task={cfg.task!r} is not allowed, expected one of {', '.join(TASKS)}")
    require(cfg.n_samples >= 1, f"dataset.n_samples must be >= 1, got {cfg.n_samples}")
    require(cfg.n_features >= 1, f"dataset.n_features must be >= 1, got {cfg.n_features}")
    require(cfg.noise >= 0, f"dataset.noise must be >= 0, got {cfg.noise}")
    if cfg.task == "regression":
        return
    require(cfg.n_classes >= 2, f"dataset.n_classes must be >= 2, got {cfg.n_classes}")
    require(0 <= cfg.label_noise <= 1, f"dataset.label_noise must be a fraction in [0, 1], got {cfg.label_noise}")
    require(cfg.class_sep > 0, f"dataset.class_sep must be > 0, got {cfg.class_sep}")
    if cfg.task == "classification":
        require(1 <= cfg.n_informative <= cfg.n_features,
                f"dataset.n_informative must be in 1..dataset.n_features={cfg.n_features}, got {cfg.n_informative}")
        # make_classification puts 2 clusters per class on the corners of an n_informative-dimensional hypercube
        require(2 * cfg.n_classes <= 2 ** cfg.n_informative,
                f"dataset.n_classes={cfg.n_classes} needs dataset.n_informative >= "
                f"{int(np.ceil(np.log2(2 * cfg.n_classes)))} (2 clusters per class on the corners of a hypercube), "
                f"got {cfg.n_informative}")
    else:
        fastest = 1 + cfg.class_sep * (cfg.n_classes - 1)
        require(cfg.seq_len > 2 * fastest,
                f"dataset.seq_len={cfg.seq_len} is too short: the fastest class completes {fastest:g} cycles, "
                f"which needs dataset.seq_len > {2 * fastest:g} steps (the Nyquist limit); raise dataset.seq_len "
                f"or lower dataset.n_classes or dataset.class_sep")

"""The report's figures: one function per PNG, taking arrays and an output path, returning the path.

matplotlib (Agg backend, chosen inside each function so importing dlrun never touches a display) and scikit-learn
are imported where used. Figures are ~100 dpi and a few inches wide; each is closed after saving, so a sweep of
hundreds of runs does not pile figures up in memory.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

DPI = 100
# points: report.html shows the learning curves (1000 px) at 1:1 in its 1000 px column, so 11 pt stays 11 pt on
# screen, and its 6-inch plots in 492 px grid cells at about 9 pt. matplotlib's "small" (8.3 pt) showed at 4 pt when
# the page scaled a 1000 px figure down to 440 px.
LEGEND_FONTSIZE = 11
SPLIT_COLORS = {"train": "tab:blue", "train_dev": "tab:cyan", "val": "tab:orange", "test": "tab:red"}


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fig.savefig(path, dpi=DPI)
    finally:
        _pyplot().close(fig)
    return path


def _finite(values) -> np.ndarray:
    """values as float64 with inf replaced by nan, which matplotlib leaves as a gap instead of breaking the axis."""
    values = np.asarray(values, dtype=np.float64)
    return np.where(np.isfinite(values), values, np.nan)


def _plot_curves(ax, epoch, train, val, best_epoch: int, stop_epoch: int, ylabel: str) -> None:
    for values, label, color in ((train, "train", SPLIT_COLORS["train"]), (val, "val", SPLIT_COLORS["val"])):
        if values is not None:
            ax.plot(epoch, _finite(values), marker=".", label=label, color=color)
    if best_epoch:
        ax.axvline(best_epoch, color="tab:green", linestyle="--", label=f"best (epoch {best_epoch})")
    if stop_epoch:
        ax.axvline(stop_epoch, color="grey", linestyle=":", label=f"stop (epoch {stop_epoch})")
    shown = np.concatenate([_finite(v).ravel() for v in (train, val) if v is not None] or [np.array([np.nan])])
    shown = shown[np.isfinite(shown)]
    if len(shown) and shown.min() > 0 and shown.max() / shown.min() > 100:  # a blow-up would flatten the rest
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)


def learning_curves(history: dict, best_epoch: int, stop_epoch: int, path) -> Path:
    """Loss and error per epoch, train vs val, with the best and stop epochs (1-based) as vertical lines.

    history: 1-D arrays of one length under epoch, train_loss, val_loss, train_error, val_error; error keys may be
    missing (regression), and non-finite values (a diverged run) leave gaps. 10 x 4 inches, one legend above both
    panels (inside a panel, a legend at a legible size covers part of the curves).
    """
    plt = _pyplot()
    epoch = np.asarray(history["epoch"])
    fig, (ax_loss, ax_error) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    _plot_curves(ax_loss, epoch, history.get("train_loss"), history.get("val_loss"), best_epoch, stop_epoch, "loss")
    ax_loss.set_title("Loss")
    if history.get("train_error") is None and history.get("val_error") is None:
        ax_error.text(0.5, 0.5, "no error metric recorded", ha="center", va="center", transform=ax_error.transAxes)
        ax_error.set_axis_off()
    else:
        _plot_curves(ax_error, epoch, history.get("train_error"), history.get("val_error"), best_epoch, stop_epoch,
                     "error (fraction)")
    ax_error.set_title("Error")
    handles, labels = ax_loss.get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside upper center", ncols=len(labels), fontsize=LEGEND_FONTSIZE,
               frameon=False)
    return _save(fig, path)


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, class_names: list[str], path) -> Path:
    """Confusion matrix of class indices y_true, y_pred (n,), each row normalised to sum to 1 (0 for a class
    absent from y_true). Square, 4 to 12 inches by the number of classes; cell values only up to 20 classes."""
    from sklearn.metrics import ConfusionMatrixDisplay

    plt = _pyplot()
    num_classes = len(class_names)
    size = float(np.clip(0.5 * num_classes + 2, 4, 12))
    fig, ax = plt.subplots(figsize=(size, size), layout="constrained")
    ConfusionMatrixDisplay.from_predictions(
        y_true, y_pred, labels=np.arange(num_classes), display_labels=class_names, normalize="true", ax=ax,
        colorbar=False, include_values=num_classes <= 20, values_format=".2f", cmap="Blues",
        xticks_rotation="vertical" if num_classes > 10 else "horizontal")
    ax.set_title("Confusion matrix (rows sum to 1)")
    return _save(fig, path)


def per_class_error(err_val: np.ndarray, err_test: np.ndarray, class_names: list[str], path) -> Path:
    """Grouped bars of per-class error rates (fractions, (K,) each, nan for a class with no sample: no bar),
    validation vs test. 6 to 14 inches wide by the number of classes, 4 high."""
    plt = _pyplot()
    num_classes = len(class_names)
    positions = np.arange(num_classes)
    fig, ax = plt.subplots(figsize=(float(np.clip(0.5 * num_classes + 2, 6, 14)), 4), layout="constrained")
    ax.bar(positions - 0.2, np.nan_to_num(_finite(err_val)), width=0.4, label="val", color=SPLIT_COLORS["val"])
    ax.bar(positions + 0.2, np.nan_to_num(_finite(err_test)), width=0.4, label="test", color=SPLIT_COLORS["test"])
    for offset, errors in ((-0.2, err_val), (0.2, err_test)):  # say "no sample" rather than draw a zero-height bar
        for k in np.flatnonzero(~np.isfinite(np.asarray(errors, dtype=np.float64))):
            ax.text(k + offset, 0, "n/a", ha="center", va="bottom", fontsize="small", rotation=90)
    ax.set_xticks(positions, class_names, rotation=90 if num_classes > 10 else 0)
    ax.set_xlabel("class")
    ax.set_ylabel("error (fraction)")
    ax.set_ylim(0, 1)
    ax.set_title("Per-class error")
    ax.legend(fontsize=LEGEND_FONTSIZE)
    return _save(fig, path)


def confidence_histograms(conf_val: np.ndarray, conf_test: np.ndarray, path) -> Path:
    """Overlaid density histograms of the max softmax probability (in [0, 1]) on validation (n,) and test (m,).
    6 x 4 inches."""
    plt = _pyplot()
    bins = np.linspace(0, 1, 21)
    fig, ax = plt.subplots(figsize=(6, 4), layout="constrained")
    for values, label in ((conf_val, "val"), (conf_test, "test")):
        values = np.asarray(values, dtype=np.float64)
        if len(values):  # an empty density histogram divides by zero
            ax.hist(values, bins=bins, density=True, alpha=0.5, label=f"{label} (n={len(values)})",
                    color=SPLIT_COLORS[label])
    ax.set_xlabel("max softmax probability")
    ax.set_ylabel("density")
    ax.set_title("Confidence")
    ax.legend(fontsize=LEGEND_FONTSIZE)
    return _save(fig, path)


def feature_pca(features: dict[str, np.ndarray], path, max_points: int = 1000, seed: int = 0) -> Path:
    """2-D PCA scatter of feature arrays (n_i, D) per split name, the PCA fitted on all of them together.

    Each split is subsampled to max_points (a random subset, by seed) so the plot stays readable. 6 x 5 inches.
    """
    from sklearn.decomposition import PCA

    plt = _pyplot()
    rng = np.random.default_rng(seed)
    samples = {}
    for name, values in features.items():
        if len(values) == 0:
            continue
        values = np.asarray(values, dtype=np.float64).reshape(len(values), -1)  # (n_i, D)
        if len(values) > max_points:
            values = values[rng.choice(len(values), max_points, replace=False)]
        samples[name] = values
    fig, ax = plt.subplots(figsize=(6, 5), layout="constrained")
    pooled = np.concatenate(list(samples.values())) if samples else np.zeros((0, 1))
    n_components = min(2, pooled.shape[1])
    if len(pooled) >= 2:
        pca = PCA(n_components=n_components, random_state=seed).fit(pooled)
        for name, values in samples.items():
            projected = pca.transform(values)  # (n_i, n_components)
            y = projected[:, 1] if n_components == 2 else np.zeros(len(projected))
            ax.scatter(projected[:, 0], y, s=6, alpha=0.5, label=f"{name} (n={len(values)})",
                       color=SPLIT_COLORS.get(name))
        explained = list(pca.explained_variance_ratio_) + [0.0]
        ax.set_xlabel(f"PC1 ({explained[0]:.0%} of variance)")
        ax.set_ylabel(f"PC2 ({explained[1]:.0%} of variance)")
        ax.legend(fontsize=LEGEND_FONTSIZE, markerscale=2)
    ax.set_title("Features, first two principal components")
    return _save(fig, path)


def regression_residuals(y_true: np.ndarray, y_pred: np.ndarray, path) -> Path:
    """Two panels for targets y_true and predictions y_pred (n,): residual (true - predicted) vs predicted, and
    predicted vs true with the y = x line. 10 x 4 inches."""
    plt = _pyplot()
    y_true = np.asarray(y_true, dtype=np.float64).ravel()
    y_pred = np.asarray(y_pred, dtype=np.float64).ravel()
    fig, (ax_res, ax_fit) = plt.subplots(1, 2, figsize=(10, 4), layout="constrained")
    ax_res.scatter(y_pred, y_true - y_pred, s=6, alpha=0.5)
    ax_res.axhline(0, color="grey", linestyle="--")
    ax_res.set_xlabel("predicted")
    ax_res.set_ylabel("residual (true - predicted)")
    ax_res.set_title("Residuals")
    ax_fit.scatter(y_true, y_pred, s=6, alpha=0.5)
    both = np.concatenate([y_true, y_pred])
    both = both[np.isfinite(both)]
    if len(both):
        ax_fit.plot([both.min(), both.max()], [both.min(), both.max()], color="grey", linestyle="--", label="y = x")
        ax_fit.legend(fontsize=LEGEND_FONTSIZE)
    ax_fit.set_xlabel("true")
    ax_fit.set_ylabel("predicted")
    ax_fit.set_title("Predicted vs true")
    return _save(fig, path)


def training_health(dynamics: list[dict], path) -> Path:
    """The probes over epochs (dynamics.csv): the gradient norm of each layer (log scale; a first layer far below the
    last is vanishing, a climb of orders of magnitude exploding) and each activation layer's share of dead (ReLU)
    or saturated (sigmoid/tanh) units. 10 x 3.6 inches."""
    plt = _pyplot()
    fig, (ax_grad, ax_units) = plt.subplots(1, 2, figsize=(10, 3.6), layout="constrained")
    weights = [r for r in dynamics if r["kind"] == "weight"]
    for layer in dict.fromkeys(r["layer"] for r in weights):
        rows = [r for r in weights if r["layer"] == layer]
        values = _finite([r["grad_norm"] for r in rows])
        values = np.where(values > 0, values, np.nan)  # a zero norm (a dead layer) has no place on a log axis
        ax_grad.plot([r["epoch"] for r in rows], values, marker=".", label=layer)
    ax_grad.set_yscale("log")
    ax_grad.set_xlabel("epoch")
    ax_grad.set_ylabel("gradient norm")
    ax_grad.set_title("Gradient norm per layer")
    activations = [r for r in dynamics if r["kind"] == "activation"]
    for layer in dict.fromkeys(r["layer"] for r in activations):
        rows = [r for r in activations if r["layer"] == layer]
        dead, saturated = _finite([r["dead_fraction"] for r in rows]), _finite([r["saturated_fraction"] for r in rows])
        share = np.where(np.nan_to_num(saturated) > np.nan_to_num(dead), saturated, dead)  # the one that applies
        ax_units.plot([r["epoch"] for r in rows], share, marker=".", label=layer)
    ax_units.set_ylim(-0.02, 1.02)
    ax_units.axhline(0.7, color="grey", linestyle=":", label="70% (a finding)")
    ax_units.set_xlabel("epoch")
    ax_units.set_ylabel("share of units")
    ax_units.set_title("Dead (ReLU) or saturated (sigmoid, tanh) units")
    for ax in (ax_grad, ax_units):
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=LEGEND_FONTSIZE - 2, ncol=2)
    return _save(fig, path)

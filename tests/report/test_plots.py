"""Each plot writes a PNG that PIL opens, at the documented size, for classification and regression arrays."""

import numpy as np
import pytest
from PIL import Image

from dlrun.report import plots

CLASS_NAMES = [f"c{k}" for k in range(7)]


def open_png(path, width_over_height: float) -> Image.Image:
    assert path.stat().st_size > 0
    image = Image.open(path)
    assert image.format == "PNG"
    image.load()  # decodes the whole file: a truncated PNG fails here
    assert image.width / image.height == pytest.approx(width_over_height, rel=0.02)
    return image


def history(epochs: int, with_error: bool = True) -> dict:
    epoch = np.arange(1, epochs + 1)
    result = {"epoch": epoch, "train_loss": 2.0 * np.exp(-0.3 * epoch), "val_loss": 2.0 * np.exp(-0.2 * epoch) + 0.1}
    if with_error:
        result["train_error"] = 0.5 * np.exp(-0.3 * epoch)
        result["val_error"] = 0.5 * np.exp(-0.2 * epoch) + 0.05
    return result


def test_learning_curves_classification(tmp_path):
    path = plots.learning_curves(history(12), best_epoch=8, stop_epoch=11, path=tmp_path / "plots" / "curves.png")
    image = open_png(path, 10 / 4)
    assert image.size == (1000, 400)  # 10 x 4 inches at 100 dpi


def test_learning_curves_regression_without_error_and_diverged_tail(tmp_path):
    run = history(6, with_error=False)
    run["train_loss"] = np.concatenate([run["train_loss"][:4], [1e6, np.inf]])
    run["val_loss"] = np.concatenate([run["val_loss"][:4], [np.nan, np.nan]])
    open_png(plots.learning_curves(run, best_epoch=4, stop_epoch=6, path=tmp_path / "curves.png"), 10 / 4)


def test_confusion_matrix_with_a_class_absent_from_the_split(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 6, 200)  # class 6 never occurs
    y_pred = np.where(rng.random(200) < 0.8, y_true, rng.integers(0, 7, 200))
    open_png(plots.confusion_matrix(y_true, y_pred, CLASS_NAMES, tmp_path / "confusion.png"), 1.0)


def test_per_class_error_with_nan(tmp_path):
    err_val = np.array([0.1, 0.0, 0.3, 0.05, 0.2, 0.1, np.nan])
    err_test = np.array([0.2, 0.1, 0.6, 0.05, 0.2, 0.4, 0.5])
    path = plots.per_class_error(err_val, err_test, CLASS_NAMES, tmp_path / "per_class.png")
    open_png(path, 6 / 4)


def test_confidence_histograms(tmp_path):
    rng = np.random.default_rng(0)
    path = plots.confidence_histograms(rng.beta(8, 1, 500), rng.beta(3, 2, 300), tmp_path / "confidence.png")
    open_png(path, 6 / 4)
    open_png(plots.confidence_histograms(rng.beta(8, 1, 500), np.array([]), tmp_path / "empty.png"), 6 / 4)


def test_feature_pca(tmp_path):
    rng = np.random.default_rng(0)
    features = {"train": rng.normal(size=(1500, 32)), "val": rng.normal(size=(200, 32)),
                "test": rng.normal(1.0, 1.0, size=(200, 32)), "train_dev": np.zeros((0, 32))}
    open_png(plots.feature_pca(features, tmp_path / "pca.png", max_points=500), 6 / 5)


def test_regression_residuals(tmp_path):
    rng = np.random.default_rng(0)
    y_true = rng.normal(size=300)
    path = plots.regression_residuals(y_true, y_true + rng.normal(0, 0.2, 300), tmp_path / "residuals.png")
    open_png(path, 10 / 4)


def test_plots_leave_no_figure_open(tmp_path):
    import matplotlib.pyplot as plt

    plots.regression_residuals(np.arange(5.0), np.arange(5.0), tmp_path / "a.png")
    plots.confidence_histograms(np.full(3, 0.9), np.full(3, 0.5), tmp_path / "b.png")
    assert plt.get_fignums() == []


def test_import_is_lazy():
    import subprocess
    import sys

    code = "import sys, dlrun.report.plots; print(sorted({'matplotlib', 'sklearn', 'torch'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"  # matplotlib loads on first use, so `dlrun --help` stays fast


def test_plots_draw_their_data_not_just_a_frame(tmp_path):
    """The same arrays give the same pixels; other arrays, or another best epoch, give other pixels."""
    def pixels(name, hist, best):
        path = plots.learning_curves(hist, best_epoch=best, stop_epoch=11, path=tmp_path / f"{name}.png")
        return np.asarray(Image.open(path).convert("L"), dtype=np.int16)

    a, again = pixels("a", history(12), 8), pixels("again", history(12), 8)
    assert np.array_equal(a, again)
    other = history(12)
    other["val_loss"] = other["val_loss"][::-1].copy()  # a rising validation curve
    assert (np.abs(a - pixels("b", other, 8)) > 40).sum() > 500  # the curve moved: many pixels changed
    assert (np.abs(a - pixels("c", history(12), 3)) > 40).sum() > 50  # the best-epoch marker moved
    rng = np.random.default_rng(0)
    y_true = rng.integers(0, 7, 200)
    right = plots.confusion_matrix(y_true, y_true, CLASS_NAMES, tmp_path / "right.png")
    wrong = plots.confusion_matrix(y_true, (y_true + 1) % 7, CLASS_NAMES, tmp_path / "wrong.png")
    assert not np.array_equal(np.asarray(Image.open(right)), np.asarray(Image.open(wrong)))

"""Reference errors the network is judged against: chance, and a linear model on the same inputs."""

from __future__ import annotations

import logging

from dlrun.report import stats

log = logging.getLogger(__name__)

IN_MEMORY = ("target_scale", "simple_val_pred", "simple_train_dev_pred", "simple_fit_true",
             "simple_fit_pred")  # not for report.json


def baselines_for(splits, max_train: int = 5000) -> dict:
    """chance_error on val (majority class / mean predictor), and a linear model's training and validation error.

    Regression figures are RMSE in the targets' units, like the network's. The IN_MEMORY entries are not written to
    report.json: the linear model's validation predictions (`simple_val_pred`, for the paired comparisons with the
    network and with chance) and its fitted rows' targets and predictions (`simple_fit_true`, `simple_fit_pred`,
    for its training error's interval). With a train-dev split, its error there too (`simple_train_dev_error`,
    `_n`, `_pred`): held-out rows of the training distribution, which tell whether it memorised its rows when
    validation comes from elsewhere.
    """
    y_train = _target(splits, splits.train)
    y_val = _target(splits, splits.val)
    x_train = splits.train.x.numpy()
    x_val = splits.val.x.numpy()
    out = {"chance_error": stats.chance_error(y_train, y_val, splits.task), "target_scale": splits.target_scale}
    try:
        predictions: dict = {}
        evals = {"val": (x_val, y_val)}
        dev = getattr(splits, "train_dev", None)
        if dev is not None and len(dev):
            evals["train_dev"] = (dev.x.numpy(), _target(splits, dev))
        errors = stats.simple_baseline_errors(x_train, y_train, evals, splits.task,
                                              max_train=max_train, predictions=predictions)
        if "train_dev" in errors:
            out["simple_train_dev_error"], out["simple_train_dev_n"] = errors["train_dev"], len(dev)
            out["simple_train_dev_pred"] = predictions["train_dev"]
        out["simple_val_pred"] = predictions["val"]
        out["simple_fit_true"], out["simple_fit_pred"] = predictions["fitted_true"], predictions["fitted"]
        # its training error on the rows it was fitted on (at most max_train): past them it would be held-out error
        out["simple_train_error"], out["simple_val_error"] = errors["fitted"], errors["val"]
        out["simple_train_n"], out["simple_val_n"] = min(len(x_train), max_train), len(x_val)
    except ValueError as err:  # e.g. too few samples
        log.warning("no linear baseline: %s", err)
        out["simple_train_error"] = out["simple_val_error"] = out["simple_train_n"] = out["simple_val_n"] = None
    return out


def _target(splits, split):
    y = split.y.numpy()
    if splits.task == "regression":
        return y * splits.target_scale + splits.target_mean
    return y

"""Reference errors the network is judged against: chance, and a linear model on the same inputs."""

from __future__ import annotations

import logging

from dlrun.report import stats

log = logging.getLogger(__name__)


def baselines_for(splits, max_train: int = 5000) -> dict:
    """chance_error (majority class / mean predictor) and a linear model's training and validation error.

    Regression figures are RMSE in the targets' units, like the network's.
    """
    y_train = _target(splits, splits.train)
    y_val = _target(splits, splits.val)
    x_train = splits.train.x.numpy()
    x_val = splits.val.x.numpy()
    out = {"chance_error": stats.chance_error(y_train, y_val, splits.task), "target_scale": splits.target_scale}
    try:
        out["simple_train_error"] = stats.simple_baseline_error(x_train, y_train, x_train, y_train, splits.task,
                                                                max_train=max_train)
    except ValueError as err:  # e.g. a single class in a tiny training split
        log.warning("no linear baseline: %s", err)
        out["simple_train_error"] = None
    return out


def _target(splits, split):
    y = split.y.numpy()
    if splits.task == "regression":
        return y * splits.target_scale + splits.target_mean
    return y

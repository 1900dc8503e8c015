"""A table from a .csv or .parquet file: dataset.target is the column to predict, every other column a feature.

Categorical features (text, category, bool columns) are one-hot encoded with pandas.get_dummies: numeric
columns keep their order, then one 0/1 column per category, categories in sorted order. Missing feature
values are an error, not silently imputed: how to fill them is a modelling choice.

dataset.task=auto reads the target: text, category or bool, or integers with few distinct values (two, or <= 20 and
< 5% of the rows), make a classification task; other numbers a regression. Class names are the sorted distinct
target values, as strings (integers sort as numbers: 2 before 10).
"""

from __future__ import annotations

import logging
from pathlib import Path
from types import SimpleNamespace

import numpy as np

from dlrun.data.sources.registry import Source, register_dataset
from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

TASKS = ("auto", "classification", "regression")
MAX_AUTO_CLASSES = 20  # auto: an integer target with at most this many values ...
MAX_AUTO_CLASS_SHARE = 0.05  # ... and fewer distinct values than this fraction of the rows is a class label
NUMERIC_SHARE = 0.9  # a text column whose values are at least this share numbers is a numeric column with typos


@register_dataset("tabular")
def load_tabular(cfg) -> Source:
    if cfg.task not in TASKS:
        raise DlrunError(f"dataset.task={cfg.task!r} is not allowed for dataset=tabular, "
                         f"expected one of {', '.join(TASKS)}")
    table = _read(str(cfg.path))
    if len(table) == 0:
        raise DlrunError(f"{cfg.path} has a header but no rows: nothing to train on")
    if cfg.target not in table.columns:
        raise DlrunError(f"dataset.target={cfg.target!r} is not a column of {cfg.path}, expected one of "
                         f"{', '.join(map(str, table.columns))}")
    target = table[cfg.target]
    features = table.drop(columns=[cfg.target])
    if features.shape[1] == 0:
        raise DlrunError(f"{cfg.path} has no column besides dataset.target={cfg.target!r}: nothing to learn from")
    _check_missing(cfg, target, features)

    import pandas as pd

    task = _infer_task(target) if cfg.task == "auto" else cfg.task
    levels = _levels(features)  # categories come from this (the training) file only
    x = _encode_features(features, str(cfg.path), levels)
    if task == "regression":
        if not _is_numeric(target):
            raise DlrunError(f"dataset.task=regression needs a numeric target, but dataset.target={cfg.target!r} "
                             f"holds {target.dtype} values such as {target.iloc[0]!r}; "
                             f"use dataset.task=classification (or auto)")
        y = target.to_numpy(dtype=np.float32)
        class_names: list[str] = []
        values: list = []
    else:
        values = _sorted_values(target)
        if len(values) < 2:
            raise DlrunError(f"dataset.target={cfg.target!r} holds one class only ({values[0]}) in {cfg.path}: a "
                             "classifier needs at least two; is it the right column or the right file?")
        if _is_numeric(target) and not pd.api.types.is_integer_dtype(target.dtype) \
                and not (target == target.round()).all():
            raise DlrunError(f"dataset.task=classification needs class labels, but dataset.target={cfg.target!r} "
                             f"holds fractional numbers such as {target[target != target.round()].iloc[0]:g} "
                             f"({len(values)} distinct values): use dataset.task=regression (or auto)")
        y = target.map({value: i for i, value in enumerate(values)}).to_numpy(dtype=np.int64)
        class_names = [str(v) for v in values]
    log.info("tabular %s: %d rows, %d features after encoding, %s", cfg.path, len(x), x.shape[1], task)

    def load_like(path: str, key: str) -> Source:
        """Another table with the same columns, encoded with this file's categories and classes."""
        other = _read(str(path), key)
        if list(other.columns) != list(table.columns):
            missing = [c for c in table.columns if c not in other.columns]
            extra = [c for c in other.columns if c not in table.columns]
            raise DlrunError(f"{key}={path!r} must have the columns of dataset.path={cfg.path!r}: "
                             + (f"missing {', '.join(map(repr, missing))}" if missing else "")
                             + ("; " if missing and extra else "")
                             + (f"extra {', '.join(map(repr, extra))}" if extra else "")
                             + ("" if missing or extra else "same names in another order"))
        other_target, other_features = other[cfg.target], other.drop(columns=[cfg.target])
        _check_missing(SimpleNamespace(path=path, target=cfg.target), other_target, other_features)
        other_x = _encode_features(other_features, str(path), levels)
        if task == "regression":
            other_y = other_target.to_numpy(dtype=np.float32)
        else:
            index = {value: i for i, value in enumerate(values)}
            unseen = sorted({str(v) for v in other_target.unique() if v not in index})
            if unseen:
                raise DlrunError(f"{key}={path!r} has target classes that dataset.path={cfg.path!r} lacks: "
                                 f"{', '.join(unseen)}; the model can only predict the classes it was trained on "
                                 f"({', '.join(class_names)})")
            other_y = other_target.map(index).to_numpy(dtype=np.int64)
        return Source(x=other_x, y=other_y, task=task, class_names=class_names,
                      description=f"{Path(str(path)).name}: {len(other_x)} rows")

    return Source(x=x, y=y, task=task, class_names=class_names,
                  description=f"{Path(str(cfg.path)).name}: {len(x)} rows, {x.shape[1]} features, target "
                              f"{cfg.target!r} ({task})", load_like=load_like)


def _read(path: str, key: str = "dataset.path"):
    """The file as a DataFrame, by extension."""
    import pandas as pd

    file = Path(path).expanduser()
    suffix = file.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise DlrunError(f"{key}={path!r} has extension {suffix or '(none)'!r}, expected .csv or .parquet")
    if not file.is_file():
        raise DlrunError(f"{key}={path!r} does not exist ({file.resolve()})")
    try:
        return pd.read_csv(file) if suffix == ".csv" else pd.read_parquet(file)
    except ImportError as err:  # read_parquet without pyarrow or fastparquet
        raise DlrunError(f"{key}={path!r}: reading parquet needs pyarrow ({err}); "
                         f"install it with: pip install 'dlrun[parquet]'") from None
    except (ValueError, OSError) as err:  # pandas' ParserError and EmptyDataError are ValueErrors; arrow's OSError
        raise DlrunError(f"{key}={path!r} cannot be read as {suffix[1:]}: {err}") from None


def _check_missing(cfg, target, features) -> None:
    counts = features.isna().sum()
    counts = counts[counts > 0]
    if len(counts):
        listed = ", ".join(f"{name!r} ({count})" for name, count in counts.items())
        raise DlrunError(f"{cfg.path} has missing feature values in {listed}; impute them (e.g. with the column "
                         f"median) or drop those rows or columns before training")
    missing_targets = int(target.isna().sum())
    if missing_targets:
        raise DlrunError(f"dataset.target={cfg.target!r} is missing in {missing_targets} rows of {cfg.path}; "
                         f"drop those rows")


def _is_numeric(column) -> bool:
    import pandas as pd

    return pd.api.types.is_numeric_dtype(column.dtype) and not pd.api.types.is_bool_dtype(column.dtype)


def _infer_task(target) -> str:
    import pandas as pd

    if not _is_numeric(target):
        return "classification"
    distinct = target.nunique()
    # two integer values (0/1) are a binary label however few the rows are
    few = distinct <= 2 or (distinct <= MAX_AUTO_CLASSES and distinct < MAX_AUTO_CLASS_SHARE * len(target))
    return "classification" if pd.api.types.is_integer_dtype(target.dtype) and few else "regression"


def _sorted_values(target) -> list:
    """Distinct target values in natural order (numbers as numbers), falling back to text order for mixed types."""
    values = list(target.unique())
    try:
        return sorted(values)
    except TypeError:  # e.g. a parquet column mixing ints and strings
        return sorted(values, key=str)


def _categorical(features) -> list[str]:
    import pandas as pd

    types = pd.api.types
    return [name for name in features.columns
            if types.is_bool_dtype(features[name].dtype) or types.is_object_dtype(features[name].dtype)
            or types.is_string_dtype(features[name].dtype) or isinstance(features[name].dtype, pd.CategoricalDtype)]


def _levels(features) -> dict[str, list]:
    """Each categorical column's categories, in sorted order: the one-hot columns, fixed by the training file."""
    return {name: _sorted_values(features[name].dropna()) for name in _categorical(features)}


def _encode_features(features, path: str, levels: dict[str, list]) -> np.ndarray:
    """(N, F) float32: numeric columns as they are, categorical columns one-hot over `levels` (a category the
    training file lacks gets all zeros, with a warning)."""
    import pandas as pd

    types = pd.api.types
    categorical = list(levels)
    unusable = [f"{name!r} ({features[name].dtype})" for name in features.columns
                if name not in categorical and not types.is_numeric_dtype(features[name].dtype)]
    if unusable:
        raise DlrunError(f"{path}: columns {', '.join(unusable)} are neither numbers nor categories; convert them "
                         f"to numbers (e.g. a date to days since a reference date) or drop them")
    for name in categorical:
        values = features[name].dropna()
        text = types.is_object_dtype(values.dtype) or types.is_string_dtype(values.dtype)
        numbers = pd.to_numeric(values, errors="coerce") if text else None
        if numbers is not None and numbers.isna().any() and numbers.notna().mean() >= NUMERIC_SHARE:
            # a column of numbers with a few words in it ("n/a", "abc"): one-hot encoding it would be silent garbage
            bad = values[numbers.isna()]
            raise DlrunError(f"{path}: column {name!r} holds numbers but also {len(bad)} value(s) that are not, such "
                             f"as {bad.iloc[0]!r} (row {bad.index[0]}); fix or drop those rows, or make the column "
                             "text if it is a category")
        distinct = features[name].nunique()
        if distinct > 100:
            log.warning("tabular %s: column %r has %d distinct values, one-hot encoded into as many columns; "
                        "is it an identifier?", path, name, distinct)
    features = features.copy()
    for name in categorical:
        unseen = set(features[name].dropna().unique()) - set(levels[name])
        if unseen:
            log.warning("tabular %s: column %r has %d categories the training file lacks (%s): encoded as zeros",
                        path, name, len(unseen), ", ".join(map(str, sorted(unseen, key=str)[:5])))
        known = features[name].where(features[name].isin(levels[name]))  # unseen -> missing: no one-hot column
        features[name] = pd.Categorical(known, categories=levels[name])
    encoded = pd.get_dummies(features, columns=categorical, dtype=np.float32) if categorical else features
    x = encoded.to_numpy(dtype=np.float32)
    if not np.isfinite(x).all():  # inf (or a number too large for float32) would poison the normalisation
        bad = [str(name) for name, column in encoded.items() if not np.isfinite(column.to_numpy(np.float32)).all()]
        raise DlrunError(f"{path}: columns {', '.join(map(repr, bad))} hold infinite values (or numbers beyond "
                         "float32's range, 3.4e38); replace or drop those rows before training")
    return x

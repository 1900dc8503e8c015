"""tabular on .csv and .parquet files written here with pandas."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from dlrun.config import TabularConfig
from dlrun.data.sources import get_loader
from dlrun.errors import DlrunError


def load(path, target: str = "label", task: str = "auto"):
    return get_loader("tabular")(TabularConfig(path=str(path), target=target, task=task))


def table(n: int = 100) -> pd.DataFrame:
    """Two numeric features, a text and a bool feature, a string label and an integer score."""
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "height": rng.normal(170, 10, n).round(1),
        "colour": rng.choice(["red", "green", "blue"], n),
        "age": rng.integers(18, 90, n),
        "member": rng.random(n) < 0.5,
        "label": rng.choice(["yes", "no", "maybe"], n),
        "score": rng.normal(0, 1, n),
    })


@pytest.mark.parametrize("suffix", [".csv", ".parquet"])
def test_string_labels_and_one_hot_categoricals(tmp_path, suffix):
    df = table()
    path = tmp_path / f"data{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    else:
        pytest.importorskip("pyarrow")
        df.to_parquet(path)
    source = load(path)
    assert source.task == "classification"
    assert source.class_names == ["maybe", "no", "yes"]  # sorted
    np.testing.assert_array_equal(np.array(source.class_names)[source.y], df["label"])
    # height, age, score, then colour_{blue,green,red}, member_{False,True}
    assert source.x.shape == (100, 3 + 3 + 2) and source.x.dtype == np.float32
    np.testing.assert_allclose(source.x[:, 0], df["height"], rtol=1e-6)
    np.testing.assert_allclose(source.x[:, 1], df["age"])
    np.testing.assert_array_equal(source.x[:, 3:6], pd.get_dummies(df["colour"]).to_numpy(dtype=np.float32))
    np.testing.assert_array_equal(source.x[:, 7], df["member"].to_numpy(dtype=np.float32))
    assert set(np.unique(source.x[:, 3:])) == {0.0, 1.0}


def test_float_target_is_regression(tmp_path):
    df = table().drop(columns=["label"])
    df.to_csv(tmp_path / "d.csv", index=False)
    source = load(tmp_path / "d.csv", target="score")
    assert source.task == "regression" and source.class_names == []
    assert source.y.dtype == np.float32
    np.testing.assert_allclose(source.y, df["score"], rtol=1e-6)
    assert source.x.shape == (100, 2 + 3 + 2)


@pytest.mark.parametrize("n_rows, n_values, task", [
    (1000, 3, "classification"),  # 3 values, 0.3% of rows
    (1000, 20, "classification"),  # the limit: <= 20 values
    (1000, 21, "regression"),  # too many values
    (100, 6, "regression"),  # 6 values are 6% of 100 rows: a count, not a label
    (30, 2, "classification"),  # 0/1 is a binary label however few the rows (2 values are 6.7% of 30)
])
def test_auto_task_for_integer_targets(tmp_path, n_rows, n_values, task):
    df = pd.DataFrame({"x": np.arange(n_rows, dtype=float), "label": np.arange(n_rows) % n_values + 1})
    df.to_csv(tmp_path / "d.csv", index=False)
    source = load(tmp_path / "d.csv")
    assert source.task == task
    if task == "classification":
        assert len(source.class_names) == n_values
        assert source.class_names[:3] == [str(v) for v in range(1, min(n_values, 3) + 1)]
        assert source.class_names[-1] == str(n_values)  # numeric order
        np.testing.assert_array_equal(source.y, df["label"] - 1)


def test_forced_classification_and_regression(tmp_path):
    df = pd.DataFrame({"x": np.arange(100.0), "label": np.arange(100) % 7})  # 7% of rows: auto says regression
    df.to_csv(tmp_path / "d.csv", index=False)
    assert load(tmp_path / "d.csv").task == "regression"
    forced = load(tmp_path / "d.csv", task="classification")
    assert forced.task == "classification" and len(forced.class_names) == 7 and forced.y.dtype == np.int64
    df["label"] = df["label"] % 2
    df.to_csv(tmp_path / "d.csv", index=False)
    assert load(tmp_path / "d.csv", task="regression").task == "regression"


def test_a_target_that_cannot_be_a_class_label_is_refused(tmp_path):
    df = pd.DataFrame({"x": np.arange(50.0), "label": np.ones(50, dtype=int)})
    df.to_csv(tmp_path / "one.csv", index=False)
    with pytest.raises(DlrunError, match="dataset.target='label' holds one class only \\(1\\) in .*at least two"):
        load(tmp_path / "one.csv")
    df["label"] = np.linspace(0, 1, 50)
    df.to_csv(tmp_path / "float.csv", index=False)
    with pytest.raises(DlrunError, match="needs class labels, but dataset.target='label' holds fractional numbers "
                                         "such as 0.02.* \\(50 distinct values\\): use dataset.task=regression"):
        load(tmp_path / "float.csv", task="classification")
    df["label"] = (np.arange(50) % 2).astype(float)  # 0.0/1.0 written by a float column: whole numbers, labels
    df.to_csv(tmp_path / "whole.csv", index=False)
    assert load(tmp_path / "whole.csv", task="classification").class_names == ["0.0", "1.0"]
    (tmp_path / "empty.csv").write_text("x,label\n")
    with pytest.raises(DlrunError, match="has a header but no rows"):
        load(tmp_path / "empty.csv")


def test_a_numeric_column_with_a_word_in_it_is_refused_not_one_hot_encoded(tmp_path):
    df = pd.DataFrame({"x": [str(v) for v in np.arange(50.0)], "label": np.arange(50) % 2})
    df.loc[17, "x"] = "n/a?"
    df.to_csv(tmp_path / "typo.csv", index=False)
    with pytest.raises(DlrunError, match="column 'x' holds numbers but also 1 value\\(s\\) that are not, such as "
                                         "'n/a\\?' \\(row 17\\)"):
        load(tmp_path / "typo.csv")
    source = load_table(tmp_path, {"colour": ["red", "green"] * 25, "label": np.arange(50) % 2})
    assert source.x.shape == (50, 2)  # a real category column is still one-hot encoded


def load_table(tmp_path, columns):
    pd.DataFrame(columns).to_csv(tmp_path / "t.csv", index=False)
    return load(tmp_path / "t.csv")


def test_missing_feature_values_name_columns_and_counts(tmp_path):
    df = table()
    df.loc[[1, 5, 9], "height"] = np.nan
    df.loc[[2], "colour"] = None
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DlrunError, match=r"'height' \(3\), 'colour' \(1\); impute them"):
        load(tmp_path / "d.csv")


def test_missing_target_values_are_an_error(tmp_path):
    df = table()
    df.loc[[0, 1], "label"] = None
    df.to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DlrunError, match="dataset.target='label' is missing in 2 rows"):
        load(tmp_path / "d.csv")


def test_text_target_with_regression_is_an_error(tmp_path):
    table().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DlrunError, match="dataset.task=regression needs a numeric target.*'label'"):
        load(tmp_path / "d.csv", task="regression")


def test_unknown_target_lists_the_columns(tmp_path):
    table().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DlrunError, match="dataset.target='lable' is not a column .* height, colour, age, member, "
                                         "label, score"):
        load(tmp_path / "d.csv", target="lable")


def test_unsupported_extension(tmp_path):
    (tmp_path / "d.xlsx").write_bytes(b"")
    with pytest.raises(DlrunError, match="dataset.path=.*d.xlsx.* has extension '.xlsx', expected .csv or .parquet"):
        load(tmp_path / "d.xlsx")


def test_missing_file(tmp_path):
    with pytest.raises(DlrunError, match="dataset.path=.*absent.csv.* does not exist"):
        load(tmp_path / "absent.csv")


def test_unparseable_file(tmp_path):
    (tmp_path / "d.parquet").write_text("this is not parquet")
    with pytest.raises(DlrunError, match="cannot be read as parquet"):
        load(tmp_path / "d.parquet")


def test_sequence_task_is_refused_for_tables(tmp_path):
    table().to_csv(tmp_path / "d.csv", index=False)
    with pytest.raises(DlrunError, match="dataset.task='sequence' is not allowed for dataset=tabular"):
        load(tmp_path / "d.csv", task="sequence")


def test_date_column_is_refused(tmp_path):
    pytest.importorskip("pyarrow")
    df = table()
    df["day"] = pd.date_range("2024-01-01", periods=len(df))
    df.to_parquet(tmp_path / "d.parquet")
    with pytest.raises(DlrunError, match="'day' \\(datetime64.*neither numbers nor categories"):
        load(tmp_path / "d.parquet")

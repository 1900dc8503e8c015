"""Bring your own validation and test data: dataset.val_from / dataset.test_from replace the random portions, with
training statistics, categories and classes from the training file only."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from dlrun import data
from dlrun.config import ImageFolderConfig, SplitConfig, TabularConfig
from dlrun.errors import DlrunError
from tests.conftest import make_config


def _table(n: int, seed: int, shift: float = 0.0, classes=("cat", "dog", "eel")) -> pd.DataFrame:
    """Two informative numeric features, a category, a class label; `shift` moves feature a."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, len(classes), n)
    return pd.DataFrame({"a": y * 2.0 + rng.normal(0, 0.7, n) + shift, "b": -y + rng.normal(0, 0.7, n),
                         "colour": rng.choice(["red", "green"], n), "label": np.array(classes)[y]})


def _write(tmp_path, name, frame) -> str:
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return str(path)


def _cfg(tmp_path, **kw) -> TabularConfig:
    return TabularConfig(path=_write(tmp_path, "train.csv", _table(600, 0)), target="label", **kw)


@pytest.mark.filterwarnings("error")  # a read-only label array made torch warn on the terminal
def test_test_from_replaces_the_test_split_and_statistics_stay_training_only(tmp_path):
    test_file = _write(tmp_path, "test.csv", _table(150, 1, shift=3.0))
    splits = data.load(_cfg(tmp_path, test_from=test_file), SplitConfig())
    assert len(splits.test) == 150 and splits.origins == {"val": "split", "test": test_file}
    # the main file is split train/val in the ratio 0.6 : 0.2
    assert len(splits.train) + len(splits.val) == 600 and len(splits.val) == pytest.approx(150, abs=2)
    # normalisation: the training rows' own statistics (the shifted test file does not move them)
    train_rows = _table(600, 0).iloc[splits.train.index]
    raw_a = train_rows["a"].to_numpy(np.float32)
    assert float(splits.mean[0]) == pytest.approx(raw_a.mean(), rel=1e-5)
    test_a = splits.test.x[:, 0] * splits.std[0] + splits.mean[0]  # back to raw units
    assert float(test_a.mean()) == pytest.approx(_table(150, 1, shift=3.0)["a"].mean(), rel=1e-4)
    assert splits.class_names == ["cat", "dog", "eel"] and splits.in_shape == splits.in_shape


def test_val_and_test_from_leave_the_main_file_to_training_and_train_dev(tmp_path):
    val_file = _write(tmp_path, "val.csv", _table(100, 2))
    test_file = _write(tmp_path, "test.csv", _table(120, 3))
    splits = data.load(_cfg(tmp_path, val_from=val_file, test_from=test_file), SplitConfig(train_dev=0.2))
    assert (len(splits.val), len(splits.test)) == (100, 120)
    assert len(splits.train) + len(splits.train_dev) == 600 and len(splits.train_dev) == 120


@pytest.mark.filterwarnings("error")  # pandas 4 will raise on categories the dtype lacks
def test_categories_come_from_the_training_file(tmp_path, caplog):
    other = _table(80, 4)
    other.loc[:9, "colour"] = "blue"  # a category the training file never had
    test_file = _write(tmp_path, "test.csv", other)
    with caplog.at_level("WARNING"):
        splits = data.load(_cfg(tmp_path, test_from=test_file), SplitConfig())
    assert splits.test.x.shape[1] == splits.train.x.shape[1] == 4  # a, b, colour_green, colour_red
    assert "categories the training file lacks (blue)" in caplog.text


@pytest.mark.parametrize("change, message", [
    (lambda t: t.assign(label=np.where(np.arange(len(t)) < 3, "fox", t["label"])), "target classes that dataset.path"),
    (lambda t: t.drop(columns=["b"]), "missing 'b'"),
    (lambda t: t.assign(extra=1.0), "extra 'extra'"),
])
def test_a_file_that_does_not_match_the_training_file_is_refused(tmp_path, change, message):
    test_file = _write(tmp_path, "test.csv", change(_table(80, 5)))
    with pytest.raises(DlrunError, match=message) as err:
        data.load(_cfg(tmp_path, test_from=test_file), SplitConfig())
    assert "dataset.test_from=" in str(err.value)


def test_a_dataset_without_the_feature_says_which_ones_have_it():
    cfg = make_config()
    cfg.dataset.val_from = "x.csv"  # a plain attribute: DigitsConfig has no such key, the loader must say so
    with pytest.raises(DlrunError, match="dataset.val_from is supported by dataset=tabular and dataset=image_folder"):
        data.load(cfg.dataset, cfg.split)


def _images(root, classes, per_class=6, value=0):
    from PIL import Image

    for c in classes:
        (root / c).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray(np.full((8, 8, 3), value + 20 * i, dtype=np.uint8)).save(root / c / f"{i}.png")
    return str(root)


def test_image_folders_bring_their_own_test_split_with_the_same_classes(tmp_path):
    main = _images(tmp_path / "main", ("cat", "dog"), per_class=10)
    test = _images(tmp_path / "test", ("cat", "dog"), per_class=4, value=100)
    splits = data.load(ImageFolderConfig(root=main, image_size=8, test_from=test), SplitConfig())
    assert len(splits.test) == 8 and len(splits.train) + len(splits.val) == 20
    assert torch.equal(torch.unique(splits.test.y), torch.tensor([0, 1]))
    other = _images(tmp_path / "other", ("cat", "emu"), per_class=4)
    with pytest.raises(DlrunError, match=r"dataset.val_from=.*missing dog; extra emu"):
        data.load(ImageFolderConfig(root=main, image_size=8, val_from=other), SplitConfig())


def test_a_planted_second_source_is_reported_as_data_mismatch(tmp_path):
    """Validation data from another distribution, train-dev from the training one: Ng's data mismatch."""
    from dlrun.config import MLPConfig
    from dlrun.pipeline import run

    val_file = _write(tmp_path, "val.csv", _table(300, 6, shift=2.5))
    dataset = TabularConfig(path=_write(tmp_path, "train.csv", _table(1200, 0)), target="label", val_from=val_file)
    cfg = make_config(dataset=dataset, model=MLPConfig(hidden=[32]), split={"train_dev": 0.25},
                      trainer={"max_epochs": 30})
    report = run(cfg, tmp_path / "run", overrides=[]).report
    assert report["run"]["origins"]["val"] == val_file
    mismatch = report["diagnosis"]["data_mismatch"]
    assert mismatch["detected"] and "train-dev" in mismatch["evidence"][0]
    assert not report["diagnosis"]["overfitting"]["detected"]
    assert report["decomposition"]["focus"] == "data_mismatch"

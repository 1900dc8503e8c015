"""Registry-wide checks (every yaml composes and names a loader, loaders import lazily), the bundled scikit-learn
sets, the synthetic generators, and the whole path through dlrun.data.load."""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from dlrun import config
from dlrun.config import SklearnDatasetConfig, SplitConfig, SyntheticConfig, TabularConfig
from dlrun.data.sources import get_loader, list_datasets
from dlrun.errors import DlrunError

CONF_DIR = Path(__file__).resolve().parents[2] / "conf"
DATASET_YAMLS = sorted(p.stem for p in (CONF_DIR / "dataset").glob("*.yaml"))
REQUIRED = {"image_folder": ["dataset.root=some/images"], "tabular": ["dataset.path=table.csv", "dataset.target=y"]}


# ----------------------------------------------------------------------------------------------------------------------
# registry and configs


@functools.cache  # composing takes ~0.2 s; the tests below only read the result
def compose_dataset(option: str):
    from hydra import compose, initialize_config_dir

    config.register_configs()
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("config", overrides=[f"dataset={option}", *REQUIRED.get(option, [])])


@pytest.mark.parametrize("option", DATASET_YAMLS)
def test_every_dataset_yaml_composes_validates_and_names_a_loader(option):
    from omegaconf import OmegaConf

    cfg = compose_dataset(option)
    config.validate(cfg)
    dataset = OmegaConf.to_object(cfg).dataset  # fails on a MISSING (???) value
    assert dataset.name in list_datasets()
    assert isinstance(dataset, config.DatasetConfig)


def test_yaml_options_pick_their_schema_and_task():
    from omegaconf import OmegaConf

    expected = {"iris": config.SklearnDatasetConfig, "diabetes": config.SklearnDatasetConfig,
                "mnist": config.TorchvisionDatasetConfig, "svhn": config.TorchvisionDatasetConfig,
                "image_folder": config.ImageFolderConfig, "tabular": config.TabularConfig}
    for option, schema in expected.items():
        assert type(OmegaConf.to_object(compose_dataset(option)).dataset) is schema, option
    assert compose_dataset("synthetic_regression").dataset.task == "regression"
    sequence = compose_dataset("synthetic_sequence").dataset
    assert (sequence.name, sequence.task, sequence.n_features) == ("synthetic", "sequence", 2)


def test_every_registered_dataset_has_a_yaml():
    names = {compose_dataset(option).dataset.name for option in DATASET_YAMLS}
    assert set(list_datasets()) <= names, f"no conf/dataset/*.yaml for {set(list_datasets()) - names}"


def test_importing_the_loaders_imports_no_heavy_library():
    heavy = ("torch", "torchvision", "sklearn", "pandas", "PIL", "scipy")
    code = (f"import sys, dlrun.data.sources as s; assert len(s.list_datasets()) >= 12; "
            f"print(sorted(m for m in {heavy} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


# ----------------------------------------------------------------------------------------------------------------------
# scikit-learn's bundled sets


@pytest.mark.parametrize("name, shape, classes", [("iris", (150, 4), 3), ("wine", (178, 13), 3),
                                                  ("breast_cancer", (569, 30), 2)])
def test_sklearn_classification_sets(name, shape, classes):
    source = get_loader(name)(SklearnDatasetConfig(name=name))
    assert source.x.shape == shape and source.x.dtype == np.float32
    assert source.task == "classification" and len(source.class_names) == classes
    assert source.y.dtype == np.int64 and set(np.unique(source.y)) == set(range(classes))


def test_diabetes_is_regression_in_original_units():
    source = get_loader("diabetes")(SklearnDatasetConfig(name="diabetes"))
    assert source.x.shape == (442, 10) and source.task == "regression" and source.class_names == []
    assert source.y.dtype == np.float32 and source.y.min() >= 25 and source.y.max() <= 346
    assert 19 <= source.x[:, 0].min() and source.x[:, 0].max() <= 79  # age in years, not scikit-learn's scaled copy


# ----------------------------------------------------------------------------------------------------------------------
# synthetic


def synthetic(**kwargs):
    return get_loader("synthetic")(SyntheticConfig(**kwargs))


@pytest.mark.parametrize("task", ["classification", "regression", "sequence"])
def test_synthetic_is_a_function_of_the_seed(task):
    a, b, c = synthetic(task=task, seed=3), synthetic(task=task, seed=3), synthetic(task=task, seed=4)
    np.testing.assert_array_equal(a.x, b.x)
    np.testing.assert_array_equal(a.y, b.y)
    assert not np.allclose(a.x, c.x)


def test_synthetic_classification_shapes():
    source = synthetic(n_samples=300, n_features=7, n_informative=3, n_classes=4)
    assert source.x.shape == (300, 7) and source.x.dtype == np.float32
    assert source.task == "classification" and source.class_names == ["0", "1", "2", "3"]
    assert source.y.dtype == np.int64 and set(np.unique(source.y)) == {0, 1, 2, 3}


def test_synthetic_regression_shapes():
    source = synthetic(task="regression", n_samples=300, n_features=5, noise=0.0)
    assert source.x.shape == (300, 5) and source.task == "regression" and source.class_names == []
    assert source.y.dtype == np.float32
    weights, *_ = np.linalg.lstsq(source.x, source.y, rcond=None)  # noise=0: the target is linear in x
    np.testing.assert_allclose(source.x @ weights, source.y, atol=1e-2)


def test_label_noise_replaces_the_expected_share_of_labels():
    clean = synthetic(n_samples=4000, n_classes=4, label_noise=0.0)
    noisy = synthetic(n_samples=4000, n_classes=4, label_noise=0.4)
    np.testing.assert_array_equal(clean.x, noisy.x)  # only labels change
    changed = np.mean(clean.y != noisy.y)
    # 40% of labels redrawn uniformly; a redrawn label keeps its class 1/4 of the time: 0.4 * 3/4 = 0.30 wrong
    assert abs(changed - 0.30) < 0.03


def test_sequence_classes_differ_in_frequency_only():
    source = synthetic(task="sequence", n_samples=3000, n_features=2, seq_len=32, n_classes=3, noise=0.0)
    assert source.x.shape == (3000, 32, 2) and source.x.dtype == np.float32
    assert source.task == "classification" and source.class_names == ["cycles=1", "cycles=2", "cycles=3"]
    np.testing.assert_array_equal(np.bincount(source.y), [1000, 1000, 1000])
    spectrum = np.abs(np.fft.rfft(source.x, axis=1))  # (N, 17, 2)
    np.testing.assert_array_equal(spectrum.argmax(axis=1), np.repeat(source.y[:, None] + 1, 2, axis=1))
    for k in range(3):  # a random phase gives every class the same mean at every step: only the pattern differs
        assert np.abs(source.x[source.y == k].mean(axis=0)).max() < 0.1


@pytest.mark.parametrize("kwargs, key", [
    ({"n_informative": 30}, "dataset.n_informative"),
    ({"n_classes": 9, "n_informative": 3}, "dataset.n_informative >= 5"),
    ({"label_noise": 1.5}, "dataset.label_noise"),
    ({"task": "sequence", "seq_len": 6, "n_classes": 3}, "dataset.seq_len > 6"),
    ({"task": "series"}, "dataset.task='series'"),
])
def test_synthetic_mistakes_name_the_key(kwargs, key):
    with pytest.raises(DlrunError) as err:
        synthetic(**kwargs)
    assert key in str(err.value)


# ----------------------------------------------------------------------------------------------------------------------
# end to end: load -> split -> normalise


def check_splits(splits, n: int) -> None:
    parts = [s.index for _, s in splits.items()]
    assert sum(len(p) for p in parts) == n
    assert len(np.unique(np.concatenate(parts))) == n  # disjoint and covering
    for name, split in splits.items():
        assert len(split.x) == len(split.y) == len(split.index), name


def test_load_end_to_end(tmp_path):
    import pandas as pd

    from dlrun.data import load

    split = SplitConfig(train=0.6, val=0.2, test=0.2, train_dev=0.1)
    iris = load(SklearnDatasetConfig(name="iris"), split)
    check_splits(iris, 150)
    assert iris.train_dev is not None and iris.in_shape == (4,) and iris.num_outputs == 3
    assert abs(float(iris.train.x.mean())) < 1e-5  # normalised with training statistics

    diabetes = load(SklearnDatasetConfig(name="diabetes"), split)
    check_splits(diabetes, 442)
    assert diabetes.task == "regression" and diabetes.num_outputs == 1

    sequence = load(SyntheticConfig(task="sequence", n_samples=300, n_features=2, seq_len=16), split)
    check_splits(sequence, 300)
    assert sequence.in_shape == (16, 2) and sequence.num_outputs == 3

    rng = np.random.default_rng(0)
    pd.DataFrame({"a": rng.normal(size=200), "kind": rng.choice(["u", "v"], 200),
                  "label": rng.choice(["cat", "dog"], 200)}).to_csv(tmp_path / "t.csv", index=False)
    table = load(TabularConfig(path=str(tmp_path / "t.csv"), target="label"), SplitConfig())
    check_splits(table, 200)
    assert table.in_shape == (3,) and table.class_names == ["cat", "dog"] and table.train_dev is None

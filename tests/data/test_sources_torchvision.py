"""MNIST, Fashion-MNIST, CIFAR-10 and SVHN read from tiny files written here in the official on-disk formats.

torchvision parses them for real; only its md5 check of CIFAR-10 and SVHN is bypassed (see `skip_md5`), since
hand-written files cannot match the checksums of the official downloads. No test touches the network.
"""

from __future__ import annotations

import io
import os
import pickle
import socket
import struct
from urllib.error import URLError

import numpy as np
import pytest

from dlrun.config import TorchvisionDatasetConfig
from dlrun.data.sources import get_loader
from dlrun.errors import DlrunError

CIFAR_CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Fail the test on any download attempt or socket connection."""
    import torchvision.datasets.cifar
    import torchvision.datasets.mnist
    import torchvision.datasets.svhn
    import torchvision.datasets.utils

    def refuse(*args, **kwargs):
        pytest.fail(f"network access attempted: {args}")  # pytest's Failed is not an OSError: nothing swallows it

    monkeypatch.setattr(socket.socket, "connect", refuse)
    for module, name in [(torchvision.datasets.utils, "download_url"),
                         (torchvision.datasets.utils, "download_and_extract_archive"),
                         (torchvision.datasets.mnist, "download_and_extract_archive"),  # imported by name there
                         (torchvision.datasets.cifar, "download_and_extract_archive"),
                         (torchvision.datasets.svhn, "download_url")]:
        monkeypatch.setattr(module, name, refuse)


@pytest.fixture
def skip_md5(monkeypatch):
    """Files written by a test cannot match the md5 sums of the official downloads that CIFAR10 and SVHN check
    (CIFAR10 in `_check_integrity` and again for batches.meta in `_load_meta`), so in this test only the check
    is reduced to "the file exists". Everything after it, the pickle and .mat parsing, runs as in real use."""
    import torchvision.datasets.cifar
    import torchvision.datasets.svhn

    def exists(fpath, md5=None):
        return os.path.isfile(fpath)

    monkeypatch.setattr(torchvision.datasets.cifar, "check_integrity", exists)
    monkeypatch.setattr(torchvision.datasets.svhn, "check_integrity", exists)


def load(name: str, root, download: bool = False):
    return get_loader(name)(TorchvisionDatasetConfig(name=name, root=str(root), download=download))


# ----------------------------------------------------------------------------------------------------------------------
# MNIST family: idx files (big-endian header: magic, then one uint32 per dimension) in ROOT/<ClassName>/raw/


def write_idx_images(path, images: np.ndarray) -> None:
    n, h, w = images.shape
    path.write_bytes(struct.pack(">IIII", 2051, n, h, w) + images.astype(np.uint8).tobytes())


def write_idx_labels(path, labels: np.ndarray) -> None:
    path.write_bytes(struct.pack(">II", 2049, len(labels)) + labels.astype(np.uint8).tobytes())


def write_mnist(root, folder: str, rng, n_train: int = 30, n_test: int = 10):
    raw = root / folder / "raw"
    raw.mkdir(parents=True)
    parts = {}
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        labels = rng.integers(0, 10, size=n, dtype=np.uint8)
        write_idx_images(raw / f"{prefix}-images-idx3-ubyte", images)
        write_idx_labels(raw / f"{prefix}-labels-idx1-ubyte", labels)
        parts[prefix] = (images, labels)
    images = np.concatenate([parts["train"][0], parts["t10k"][0]])
    labels = np.concatenate([parts["train"][1], parts["t10k"][1]])
    return images, labels


@pytest.mark.parametrize("name, folder, first_class", [("mnist", "MNIST", "0 - zero"),
                                                       ("fashion_mnist", "FashionMNIST", "T-shirt/top")])
def test_mnist_family_pools_train_and_test_pixels_exactly(tmp_path, name, folder, first_class):
    images, labels = write_mnist(tmp_path, folder, np.random.default_rng(0))
    source = load(name, tmp_path)
    assert source.x.shape == (40, 1, 28, 28) and source.x.dtype == np.float32
    assert 0.0 <= source.x.min() and source.x.max() <= 1.0
    np.testing.assert_array_equal(source.x[:, 0], images.astype(np.float32) / 255)  # train first, then test
    np.testing.assert_array_equal(source.y, labels.astype(np.int64))
    assert source.y.dtype == np.int64
    assert source.task == "classification"
    assert len(source.class_names) == 10 and source.class_names[0] == first_class


# ----------------------------------------------------------------------------------------------------------------------
# CIFAR-10: pickled dicts, written as Python 2 pickled them (the official files come from Python 2)


class Py2Pickler(pickle._Pickler):
    """Writes bytes as Python 2 `str` (BINSTRING), as in the official files: `pickle.load(encoding="latin1")`, as
    torchvision calls it, then gives str keys ("data"), and encoding="bytes" gives b"data"."""

    dispatch = pickle._Pickler.dispatch.copy()

    def save_py2_str(self, obj: bytes) -> None:
        header = pickle.SHORT_BINSTRING + bytes([len(obj)]) if len(obj) < 256 else \
            pickle.BINSTRING + struct.pack("<i", len(obj))
        self.write(header + obj)
        self.memoize(obj)

    dispatch[bytes] = save_py2_str


def write_py2_pickle(path, obj) -> None:
    buffer = io.BytesIO()
    Py2Pickler(buffer, protocol=2).dump(obj)
    path.write_bytes(buffer.getvalue())


def write_cifar10(root, rng, per_batch: int = 4, n_test: int = 5):
    folder = root / "cifar-10-batches-py"
    folder.mkdir()
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    images, labels = [], []
    for name in names:
        n = n_test if name == "test_batch" else per_batch
        data = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # each row: 1024 red, 1024 green, 1024 blue
        batch_labels = [int(v) for v in rng.integers(0, 10, size=n)]
        write_py2_pickle(folder / name, {b"batch_label": name.encode(), b"labels": batch_labels, b"data": data,
                                         b"filenames": [f"img_{i}.png".encode() for i in range(n)]})
        images.append(data.reshape(n, 3, 32, 32))
        labels += batch_labels
    write_py2_pickle(folder / "batches.meta", {b"label_names": [c.encode() for c in CIFAR_CLASSES],
                                               b"num_cases_per_batch": per_batch, b"num_vis": 3072})
    return np.concatenate(images), np.array(labels)


def test_cifar10_reads_pickled_batches_as_nchw(tmp_path, skip_md5):
    images, labels = write_cifar10(tmp_path, np.random.default_rng(1))
    source = load("cifar10", tmp_path)
    assert source.x.shape == (25, 3, 32, 32) and source.x.dtype == np.float32
    np.testing.assert_array_equal(source.x, images.astype(np.float32) / 255)  # channels first, rows then columns
    np.testing.assert_array_equal(source.y, labels)
    assert source.class_names == CIFAR_CLASSES


# ----------------------------------------------------------------------------------------------------------------------
# SVHN: MATLAB files X (32, 32, 3, n) uint8 and y (n, 1) with label 10 for the digit 0


def write_svhn(root, rng, n_train: int = 12, n_test: int = 6):
    from scipy.io import savemat

    images, digits = [], []
    for name, n in (("train_32x32.mat", n_train), ("test_32x32.mat", n_test)):
        x = rng.integers(0, 256, size=(32, 32, 3, n), dtype=np.uint8)  # (H, W, C, N)
        digit = np.arange(n) % 10
        savemat(root / name, {"X": x, "y": np.where(digit == 0, 10, digit).astype(np.uint8)[:, None]})
        images.append(x.transpose(3, 2, 0, 1))  # (N, C, H, W)
        digits.append(digit)
    return np.concatenate(images), np.concatenate(digits)


def test_svhn_reads_mat_files_and_maps_label_10_to_digit_0(tmp_path, skip_md5):
    images, digits = write_svhn(tmp_path, np.random.default_rng(2))
    source = load("svhn", tmp_path)
    assert source.x.shape == (18, 3, 32, 32)
    np.testing.assert_array_equal(source.x, images.astype(np.float32) / 255)
    np.testing.assert_array_equal(source.y, digits)
    assert source.y.min() == 0 and source.y.max() == 9
    assert source.class_names == [str(d) for d in range(10)]


# ----------------------------------------------------------------------------------------------------------------------
# missing data: a DlrunError naming the folder, the files and the flag, and no download


@pytest.mark.parametrize("name, folder, a_file", [
    ("mnist", "MNIST/raw", "train-images-idx3-ubyte"),
    ("fashion_mnist", "FashionMNIST/raw", "t10k-labels-idx1-ubyte"),
    ("cifar10", "cifar-10-batches-py", "data_batch_1"),
    ("svhn", "", "train_32x32.mat"),
])
def test_missing_dataset_says_where_and_how_to_download(tmp_path, name, folder, a_file):
    with pytest.raises(DlrunError) as err:
        load(name, tmp_path)
    message = str(err.value)
    assert "dataset.download=true" in message
    assert str((tmp_path / folder).resolve()) in message
    assert a_file in message


def test_partly_missing_mnist_names_only_the_missing_files(tmp_path):
    write_mnist(tmp_path, "MNIST", np.random.default_rng(0))
    (tmp_path / "MNIST" / "raw" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DlrunError, match="lacks t10k-images-idx3-ubyte\\. Set dataset.download=true"):
        load("mnist", tmp_path)


def test_failed_download_is_a_dlrun_error(tmp_path, monkeypatch):
    import torchvision.datasets.mnist

    def offline(url, *args, **kwargs):
        raise URLError("no network in this test")

    monkeypatch.setattr(torchvision.datasets.mnist, "download_and_extract_archive", offline)
    with pytest.raises(DlrunError, match="dataset.download=true but mnist could not be fetched .*no network"):
        load("mnist", tmp_path, download=True)


def test_files_that_fail_the_md5_check_are_named_corrupt_not_missing(tmp_path):
    write_cifar10(tmp_path, np.random.default_rng(1))  # all present, but not the official bytes
    with pytest.raises(DlrunError, match="failed torchvision's check .*Delete them and set dataset.download=true"):
        load("cifar10", tmp_path)

"""image_folder on PNG files written here: one folder per class, images of different sizes."""

from __future__ import annotations

import numpy as np
import pytest

from dlrun.config import ImageFolderConfig
from dlrun.data.sources import get_loader
from dlrun.errors import DlrunError

# class folder -> (solid RGB colour, image sizes (width, height)); folders sort as bird, cat, dog
CLASSES = {
    "dog": ((200, 40, 10), [(40, 30), (17, 23)]),
    "cat": ((10, 220, 60), [(64, 64), (8, 12), (33, 20)]),
    "bird": ((30, 60, 250), [(20, 50)]),
}


def write_png(path, colour, size) -> None:
    from PIL import Image

    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def folder(tmp_path):
    root = tmp_path / "images"
    for name, (colour, sizes) in CLASSES.items():
        (root / name).mkdir(parents=True)
        for i, size in enumerate(sizes):
            write_png(root / name / f"{i}.png", colour, size)
    return root


def load(root, **kwargs):
    return get_loader("image_folder")(ImageFolderConfig(root=str(root), **kwargs))


def test_images_are_resized_and_labelled_by_sorted_folder(folder):
    source = load(folder, image_size=16)
    assert source.x.shape == (6, 3, 16, 16) and source.x.dtype == np.float32
    assert source.class_names == ["bird", "cat", "dog"]
    np.testing.assert_array_equal(source.y, [0, 1, 1, 1, 2, 2])
    for i, label in enumerate(source.y):
        colour = np.array(CLASSES[source.class_names[label]][0], dtype=np.float32) / 255
        # a solid colour stays that colour through resizing; values in [0, 1], channels first
        np.testing.assert_allclose(source.x[i], np.broadcast_to(colour[:, None, None], (3, 16, 16)), atol=1e-6)


def test_grayscale_gives_one_channel_of_luminance(folder):
    source = load(folder, image_size=10, grayscale=True)
    assert source.x.shape == (6, 1, 10, 10)
    red, green, blue = CLASSES["bird"][0]
    luminance = (red * 299 + green * 587 + blue * 114) / 1000 / 255  # ITU-R 601-2, as PIL's convert("L")
    np.testing.assert_allclose(source.x[0], luminance, atol=1 / 255)


def test_missing_root_is_a_dlrun_error(tmp_path):
    with pytest.raises(DlrunError, match="dataset.root=.*nowhere.* is not a folder"):
        load(tmp_path / "nowhere")


def test_root_without_class_folders_is_a_dlrun_error(tmp_path):
    write_png(tmp_path / "loose.png", (0, 0, 0), (8, 8))
    with pytest.raises(DlrunError, match="Couldn't find any class folder.*one sub-folder of images per class"):
        load(tmp_path)


def test_class_folder_without_images_is_a_dlrun_error(folder):
    (folder / "empty").mkdir()
    (folder / "empty" / "notes.txt").write_text("not an image")
    with pytest.raises(DlrunError, match="no valid file for the classes empty"):
        load(folder)


def test_single_class_is_a_dlrun_error(tmp_path):
    (tmp_path / "only").mkdir()
    write_png(tmp_path / "only" / "a.png", (1, 2, 3), (8, 8))
    with pytest.raises(DlrunError, match="has 1 class folder \\(only\\); classification needs at least 2"):
        load(tmp_path)


def test_unreadable_image_is_named(folder):
    (folder / "cat" / "broken.png").write_bytes(b"not a png at all")
    with pytest.raises(DlrunError, match="cannot read image .*broken.png"):
        load(folder)

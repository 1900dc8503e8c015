"""The registry: one builder per name, and an unknown name lists the known ones."""

import pytest

from dlrun.config import MLPConfig, RegConfig
from dlrun.errors import DlrunError
from dlrun.models import build, list_models, register_model
from dlrun.models.registry import MODELS


def test_a_duplicate_name_is_refused_and_the_first_builder_kept():
    original = MODELS.items["vgg"]
    with pytest.raises(ValueError, match="'vgg' is already registered"):
        register_model("vgg")(lambda cfg, in_shape, num_outputs, reg: None)
    assert MODELS.items["vgg"] is original


def test_an_unknown_family_lists_the_known_ones():
    with pytest.raises(DlrunError, match="unknown model 'transformer', expected one of") as caught:
        build(MLPConfig(family="transformer"), (12,), 7, RegConfig())
    for name in list_models():
        assert name in str(caught.value)


def test_every_family_is_registered():
    assert {"mlp", "lenet", "alexnet", "vgg", "resnet", "inception", "lstm", "gru", "torchvision"} <= set(list_models())

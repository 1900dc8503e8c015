"""Transfer learning through registry.build: model.weights loads a local state dict, model.freeze stops gradients."""

from __future__ import annotations

import dataclasses
import socket

import pytest
import torch

from dlrun.config import LeNetConfig, MLPConfig, RecurrentConfig, RegConfig, ResNetConfig, TorchvisionModelConfig
from dlrun.errors import DlrunError
from dlrun.models import build

REG = RegConfig(dropout=0.1, batchnorm=True)
SHAPE = (1, 8, 8)
SOURCES = {  # small models of three kinds: plain convs, BatchNorm buffers in residual blocks, a recurrent layer
    "lenet": LeNetConfig(channels=[4, 8], fc=[16]),
    "resnet": ResNetConfig(width=4),
    "lstm": RecurrentConfig(hidden_size=8),
}


def saved(cfg, tmp_path, num_outputs: int = 7) -> tuple[str, dict[str, torch.Tensor]]:
    """Build cfg, train nothing, save its state dict; return the path and the saved tensors."""
    torch.manual_seed(0)
    state = build(cfg, SHAPE, num_outputs, REG).state_dict()
    path = tmp_path / "source.pt"
    torch.save(state, path)
    return str(path), state


@pytest.mark.parametrize("family", SOURCES)
@pytest.mark.parametrize("freeze", ["features", "all_but_head"])
def test_weights_are_loaded_and_frozen_up_to_the_head(family, freeze, tmp_path):
    path, state = saved(SOURCES[family], tmp_path)
    torch.manual_seed(1)  # a different initialisation, so equality below means "loaded"
    net = build(dataclasses.replace(SOURCES[family], weights=path, freeze=freeze), SHAPE, 7, REG)

    for name, param in net.named_parameters():
        if name.startswith("features."):
            assert not param.requires_grad, name
            torch.testing.assert_close(param, state[name], rtol=0, atol=0)
        else:
            assert name.startswith("head.") and param.requires_grad, name
    for name, buffer in net.named_buffers():  # BatchNorm running statistics travel with the weights
        torch.testing.assert_close(buffer, state[name], rtol=0, atol=0)


def test_a_head_with_another_number_of_classes_is_replaced_by_a_fresh_one(tmp_path):
    cfg = SOURCES["lenet"]
    path, state = saved(cfg, tmp_path, num_outputs=7)
    torch.manual_seed(1)
    fresh = build(cfg, SHAPE, 3, REG)
    torch.manual_seed(1)
    net = build(dataclasses.replace(cfg, weights=path), SHAPE, 3, REG)

    for name, param in net.features.named_parameters(prefix="features"):
        torch.testing.assert_close(param, state[name], rtol=0, atol=0)
    assert net.head.weight.shape == (3, 16)
    torch.testing.assert_close(net.head.weight, fresh.head.weight, rtol=0, atol=0)  # the builder's, untouched
    assert all(param.requires_grad for param in net.parameters())  # freeze=none by default


def test_a_missing_file_is_a_user_error(tmp_path):
    cfg = dataclasses.replace(SOURCES["lenet"], weights=str(tmp_path / "nowhere.pt"))
    with pytest.raises(DlrunError, match="no such file"):
        build(cfg, SHAPE, 7, REG)


def test_a_file_that_is_not_a_state_dict_is_a_user_error(tmp_path):
    path = tmp_path / "notes.pt"
    path.write_text("not a checkpoint")
    with pytest.raises(DlrunError, match="cannot be read: it is truncated, corrupt or not a file that torch.save wrote"):
        build(dataclasses.replace(SOURCES["lenet"], weights=str(path)), SHAPE, 7, REG)


def test_a_saved_object_that_is_not_a_dict_is_a_user_error(tmp_path):
    path = tmp_path / "list.pt"
    torch.save([1, 2, 3], path)
    with pytest.raises(DlrunError):
        build(dataclasses.replace(SOURCES["lenet"], weights=str(path)), SHAPE, 7, REG)


def test_weights_sharing_no_tensor_are_refused(tmp_path):
    path, _ = saved(MLPConfig(hidden=[8]), tmp_path, num_outputs=5)
    with pytest.raises(DlrunError, match="shares no tensor with this model"):
        build(dataclasses.replace(SOURCES["lenet"], weights=path), SHAPE, 7, REG)


def test_weights_of_another_architecture_are_refused(tmp_path):
    path, _ = saved(MLPConfig(hidden=[8]), tmp_path, num_outputs=7)
    with pytest.raises(DlrunError):
        build(dataclasses.replace(SOURCES["lenet"], weights=path), SHAPE, 7, REG)


def test_torchvision_default_weights_need_download_and_touch_no_network(monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the network was used")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", no_network)
    cfg = TorchvisionModelConfig(name="resnet18", weights="DEFAULT", download=False)
    with pytest.raises(DlrunError, match=r"model.download=true .* model.weights=PATH"):
        build(cfg, (3, 32, 32), 7, REG)


def test_default_weights_on_a_dlrun_family_are_a_user_error():
    with pytest.raises(DlrunError, match="model.weights=DEFAULT .* needs model=torchvision"):
        build(dataclasses.replace(SOURCES["lenet"], weights="DEFAULT"), SHAPE, 7, REG)


def test_plain_torchvision_state_dict_loads_into_the_wrapped_model(tmp_path):
    import torchvision

    from dlrun.config import TorchvisionModelConfig

    plain = torchvision.models.resnet18(weights=None)
    path = tmp_path / "resnet18.pt"
    torch.save(plain.state_dict(), path)
    model = build(TorchvisionModelConfig(name="resnet18", weights=str(path), freeze="features"), (3, 32, 32), 7, REG)
    loaded = {k: v for k, v in model.state_dict().items() if k.endswith("conv1.weight")}
    assert loaded and all(torch.equal(v, plain.conv1.weight) for k, v in loaded.items() if "layer" not in k)

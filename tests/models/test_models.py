"""Every registered model on every input shape it supports (after timm's tests/test_models.py), with 7 outputs
(an unusual count, as torchvision's test/test_models.py advises); then per-family sizing rules and conf/model/."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf
from torch import nn

from dlrun.config import (AlexNetConfig, InceptionConfig, LeNetConfig, MLPConfig, RecurrentConfig, RegConfig,
                          ResNetConfig, TorchvisionModelConfig, VGGConfig, register_configs)
from dlrun.errors import DlrunError
from dlrun.models import build, list_models

CONF = Path(__file__).resolve().parents[2] / "conf"
NUM_OUTPUTS = 7
REG = RegConfig(dropout=0.1, batchnorm=True)
NO_REG = RegConfig(dropout=0.0, batchnorm=False)
IMAGES = [(1, 8, 8), (3, 32, 32)]
SEQUENCES = [(8, 8), (20, 4)]
VECTORS = [(12,)]

# name -> (a tiny config, the input shapes it supports); a newly registered model must be added here
TINY = {
    "mlp": (MLPConfig(hidden=[32, 16]), IMAGES + SEQUENCES + VECTORS),
    "lenet": (LeNetConfig(channels=[4, 8], fc=[32, 16]), IMAGES),
    "alexnet": (AlexNetConfig(width=8, fc=32), IMAGES),
    "vgg": (VGGConfig(width=8, fc=32), IMAGES),
    "resnet": (ResNetConfig(width=8), IMAGES),
    "inception": (InceptionConfig(width=8, blocks=3), IMAGES),
    "lstm": (RecurrentConfig(family="lstm", hidden_size=16, num_layers=2, bidirectional=True),
             IMAGES + SEQUENCES + VECTORS),
    "gru": (RecurrentConfig(family="gru", hidden_size=16), IMAGES + SEQUENCES + VECTORS),
    "torchvision": (TorchvisionModelConfig(name="resnet18"), IMAGES),
}
CASES = [(name, shape) for name, (_, shapes) in TINY.items() for shape in shapes]
IMAGE_ONLY = [name for name, (_, shapes) in TINY.items() if shapes == IMAGES]


def make(model: str, shape: tuple[int, ...], reg=REG, **changes) -> nn.Module:
    """The TINY config of `model`, with `changes` to its fields, built for 7 outputs."""
    torch.manual_seed(0)
    return build(dataclasses.replace(TINY[model][0], **changes), shape, NUM_OUTPUTS, reg)


def test_every_registered_model_has_a_tiny_config():
    assert sorted(TINY) == list_models()


# ----------------------------------------------------------------------------------------------------------------------
# registry-wide


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in CASES])
def test_forward_and_backward(name, shape):
    net = make(name, shape)
    x = torch.randn(4, *shape)

    features = net.features(x)
    assert features.shape == (4, net.head.in_features)  # the transfer-learning split: 2-D penultimate features
    assert isinstance(net.head, nn.Linear) and net.head.out_features == NUM_OUTPUTS
    out = net(x)
    assert out.shape == (4, NUM_OUTPUTS)
    assert torch.isfinite(out).all()

    nn.functional.cross_entropy(out, torch.arange(4)).backward()
    for param_name, param in net.named_parameters():
        assert param.grad is not None, f"{param_name} got no gradient"
        assert torch.isfinite(param.grad).all(), f"{param_name} has a non-finite gradient"


@pytest.mark.parametrize("name,shape", CASES, ids=[f"{n}-{'x'.join(map(str, s))}" for n, s in CASES])
def test_a_few_adam_steps_fit_a_fixed_batch(name, shape):
    net = make(name, shape)
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(8, *shape, generator=generator)
    y = torch.randint(0, NUM_OUTPUTS, (8,), generator=generator)

    def loss() -> torch.Tensor:
        torch.manual_seed(2)  # the same dropout masks at each evaluation
        return nn.functional.cross_entropy(net(x), y)

    with torch.no_grad():
        before = loss().item()
    optimizer = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(10):
        optimizer.zero_grad()
        loss().backward()
        optimizer.step()
    with torch.no_grad():
        after = loss().item()
    assert after < 0.9 * before, f"loss went from {before:.3f} to {after:.3f}"  # measured: 0.8 or less for all


@pytest.mark.parametrize("name", IMAGE_ONLY)
@pytest.mark.parametrize("shape", VECTORS + SEQUENCES)
def test_image_models_refuse_other_inputs(name, shape):
    message = rf"model={name} needs image inputs \(C, H, W\); the dataset gives .*; use model=mlp"
    with pytest.raises(DlrunError, match=message):
        make(name, shape)


@pytest.mark.parametrize("name", [n for n in TINY if n != "torchvision"])  # torchvision models bring their own
def test_reg_dropout_and_batchnorm_are_applied(name):
    shape = TINY[name][1][0]

    def count(net, kind):
        return sum(isinstance(m, kind) for m in net.modules())

    plain, regularised = make(name, shape, reg=NO_REG), make(name, shape, reg=REG)
    assert count(plain, nn.Dropout) == 0
    assert count(regularised, nn.Dropout) >= 1
    if name in ("mlp", "lenet", "alexnet", "vgg", "inception"):
        assert count(plain, nn.modules.batchnorm._BatchNorm) == 0
        assert count(regularised, nn.modules.batchnorm._BatchNorm) >= 1
    if name == "resnet":  # part of the architecture
        assert count(plain, nn.BatchNorm2d) == count(regularised, nn.BatchNorm2d) > 0


# ----------------------------------------------------------------------------------------------------------------------
# sizing rules of each family


@pytest.mark.parametrize("shape,flat", [((1, 32, 32), 16 * 5 * 5), ((1, 28, 28), 16 * 4 * 4), ((1, 8, 8), 16 * 2 * 2)])
def test_lenet_sizes_its_first_fully_connected_layer_from_the_input(shape, flat):
    net = build(LeNetConfig(), shape, NUM_OUTPUTS, NO_REG)
    first_fc = next(m for m in net.features if isinstance(m, nn.Linear))
    assert first_fc.in_features == flat  # 400 = 16x5x5 is the paper's, for 32x32 inputs


@pytest.mark.parametrize("variant,convs", [(11, 8), (13, 10), (16, 13)])
@pytest.mark.parametrize("shape,pools", [((1, 8, 8), 3), ((3, 32, 32), 5)])
def test_vgg_variants_and_pooling(variant, convs, shape, pools):
    net = make("vgg", shape, variant=variant)
    assert sum(isinstance(m, nn.Conv2d) for m in net.modules()) == convs  # Table 1: weight layers = convs + 3 fc
    assert sum(isinstance(m, nn.MaxPool2d) for m in net.modules()) == pools  # 8x8 stops pooling at 1x1
    assert net(torch.randn(2, *shape)).shape == (2, NUM_OUTPUTS)


@pytest.mark.parametrize("name,variant,allowed", [("vgg", 19, "11, 13, 16"), ("resnet", 50, "18, 34")])
def test_unknown_variant_names_the_key_the_value_and_the_choices(name, variant, allowed):
    with pytest.raises(DlrunError, match=f"model.variant={variant} .*expected one of {allowed}"):
        make(name, (1, 8, 8), variant=variant)


@pytest.mark.parametrize("variant,blocks", [(18, 8), (34, 16)])
def test_resnet_variants_and_stems(variant, blocks):
    small = make("resnet", (3, 32, 32), variant=variant)
    assert sum(type(m).__name__ == "BasicBlock" for m in small.modules()) == blocks
    assert not any(isinstance(m, nn.MaxPool2d) for m in small.modules())  # CIFAR stem: 3x3 conv, no max-pool
    assert small.features[0].kernel_size == (3, 3) and small.features[0].stride == (1, 1)

    large = make("resnet", (3, 96, 96), variant=variant)  # ImageNet stem: 7x7 stride 2 + max-pool
    assert large.features[0].kernel_size == (7, 7) and large.features[0].stride == (2, 2)
    assert any(isinstance(m, nn.MaxPool2d) for m in large.modules())
    assert large(torch.randn(2, 3, 96, 96)).shape == (2, NUM_OUTPUTS)


@pytest.mark.parametrize("shape,step_features", [((1, 8, 8), 8), ((3, 32, 32), 96), ((20, 4), 4), ((12,), 1)])
def test_recurrent_reads_inputs_as_sequences(shape, step_features):
    assert make("gru", shape).features.rnn.input_size == step_features


def test_recurrent_features_are_the_final_state_of_each_direction():
    net = make("lstm", (1, 8, 8), reg=NO_REG).eval()
    x = torch.randn(3, 1, 8, 8)
    outputs, _ = net.features.rnn(x[:, 0])  # (N, 8 steps, 2 * 16): rows are the steps
    expected = torch.cat([outputs[:, -1, :16], outputs[:, 0, 16:]], dim=1)  # forward ends last, backward first
    torch.testing.assert_close(net.features(x), expected)


@pytest.mark.parametrize("num_layers,dropout", [(1, 0.0), (2, 0.1)])
def test_recurrent_dropout_between_layers_only_when_stacked(num_layers, dropout):
    assert make("gru", (12,), num_layers=num_layers).features.rnn.dropout == dropout


# ----------------------------------------------------------------------------------------------------------------------
# torchvision


@pytest.mark.parametrize("model_name,width", [("mobilenet_v3_small", 1024), ("squeezenet1_1", 512)])
def test_torchvision_head_is_replaced_whatever_its_name(model_name, width):
    # mobilenet's last layer is classifier[3]; squeezenet has no Linear: its classifier is a 1x1 conv
    net = make("torchvision", (1, 8, 8), name=model_name)
    assert net.head.in_features == width
    out = net(torch.randn(2, 1, 8, 8))
    assert out.shape == (2, NUM_OUTPUTS) and torch.isfinite(out).all()


def test_torchvision_adapter_repeats_grey_images_and_upsamples_small_ones():
    adapt = make("torchvision", (1, 8, 8)).features.adapt
    x = adapt(torch.randn(2, 1, 8, 8))
    assert x.shape == (2, 3, 32, 32)
    assert torch.equal(x[:, 0], x[:, 1]) and torch.equal(x[:, 0], x[:, 2])
    large = torch.randn(2, 3, 40, 40)
    assert torch.equal(make("torchvision", (3, 40, 40)).features.adapt(large), large)  # large enough: untouched


@pytest.mark.parametrize("model_name,message", [
    ("resnet19", r"'resnet19' is not a torchvision model; close matches: resnet18.*list_models"),
    ("fasterrcnn_resnet50_fpn", "not an image classifier"),
])
def test_torchvision_unknown_name(model_name, message):
    with pytest.raises(DlrunError, match=message):
        make("torchvision", (3, 32, 32), name=model_name)


def test_torchvision_refuses_images_it_cannot_take():
    with pytest.raises(DlrunError, match="1- or 3-channel images"):
        make("torchvision", (2, 32, 32))


# ----------------------------------------------------------------------------------------------------------------------
# conf/model/


YAMLS = sorted(path.stem for path in (CONF / "model").glob("*.yaml"))


def compose_model(option: str):
    register_configs()
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return OmegaConf.to_object(compose("config", overrides=[f"model={option}"]).model)


@pytest.mark.parametrize("option", YAMLS)
def test_each_model_yaml_composes_and_builds(option):
    model_cfg = compose_model(option)
    assert model_cfg.family == option  # conf/model/NAME.yaml selects the builder registered as NAME
    net = build(model_cfg, (1, 8, 8), NUM_OUTPUTS, NO_REG).eval()  # the yaml's own sizes, on digits
    with torch.no_grad():
        assert net(torch.randn(2, 1, 8, 8)).shape == (2, NUM_OUTPUTS)


def test_every_builder_has_a_yaml():
    assert YAMLS == list_models()


def test_an_mlp_without_hidden_layers_is_a_linear_model_and_the_report_can_grow_it():
    from dlrun.report.diagnosis import _bigger_model, _smaller_model

    model = build(MLPConfig(hidden=[]), (1, 8, 8), NUM_OUTPUTS, REG)
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, NUM_OUTPUTS)]
    assert model(torch.randn(5, 1, 8, 8)).shape == (5, NUM_OUTPUTS)
    settings = {"model": {"family": "mlp", "hidden": []}}
    assert _bigger_model(settings) == {"model.hidden": [64]} and _smaller_model(settings) == {}


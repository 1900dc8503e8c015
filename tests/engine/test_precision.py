"""The GPU paths' logic, checked on the CPU: loss scaling for fp16, native bf16, the local rank's GPU, and random
draws on the batches' device. tests/engine/test_cuda.py runs the same paths on a real GPU when there is one."""

from __future__ import annotations

import csv

import pytest
import torch

from dlrun.engine import checkpoint, devices
from dlrun.engine.devices import Runtime
from dlrun.errors import DlrunError
from dlrun.pipeline import run
from tests.conftest import make_config


def _fake_cuda(monkeypatch, count: int = 2, native_bf16: bool = True):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)

    def is_bf16_supported(including_emulation: bool = True):
        return native_bf16 or including_emulation

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", is_bf16_supported)


@pytest.mark.parametrize("native, expected", [(True, "bf16"), (False, "32")])
def test_auto_precision_picks_bf16_only_where_the_gpu_computes_it_natively(monkeypatch, native, expected):
    _fake_cuda(monkeypatch, native_bf16=native)
    assert devices.resolve("cuda", "auto").precision == expected
    assert devices.resolve("cpu", "auto").precision == "32"


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "cuda:1"])
def test_under_torchrun_each_process_uses_its_local_ranks_gpu(monkeypatch, device):
    _fake_cuda(monkeypatch, count=2)
    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    rt = devices.resolve(device, "32")
    assert rt.device == torch.device("cuda", 1) and (rt.rank, rt.world_size) == (1, 2)


def test_more_processes_than_gpus_is_a_user_error(monkeypatch):
    _fake_cuda(monkeypatch, count=2)
    monkeypatch.setenv("RANK", "2")
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("LOCAL_RANK", "2")
    with pytest.raises(DlrunError, match="local rank 2 but only 2 CUDA GPUs.*--nproc_per_node"):
        devices.resolve("cuda", "32")


def test_a_grad_scaler_exactly_for_fp16():
    cpu = torch.device("cpu")
    assert devices.grad_scaler(Runtime(cpu, None, False)) is None
    assert devices.grad_scaler(Runtime(cpu, torch.bfloat16, False)) is None
    assert isinstance(devices.grad_scaler(Runtime(cpu, torch.float16, False)), torch.amp.GradScaler)


def test_random_draws_on_batches_use_a_generator_on_the_batches_device(monkeypatch):
    gen = torch.Generator()
    cpu = torch.device("cpu")
    assert devices.batch_generator(gen, cpu, cpu, seed=0) is gen  # in memory: the shuffle's own generator

    made = []

    class FakeGenerator:
        def __init__(self, device):
            made.append(torch.device(device))

        def manual_seed(self, seed):
            made.append(seed)
            return self

    monkeypatch.setattr(torch, "Generator", FakeGenerator)
    batch_gen = devices.batch_generator(gen, cpu, torch.device("cuda", 1), seed=5)
    assert isinstance(batch_gen, FakeGenerator) and made == [torch.device("cuda", 1), 6]


def _fp16_on_cpu(monkeypatch):
    """fit() with an fp16 runtime on the CPU (CPU autocast runs fp16 too): the GradScaler path without a GPU."""
    resolve = devices.resolve
    monkeypatch.setattr(devices, "resolve", lambda device, precision, conv_model=False: Runtime(
        torch.device("cpu"), torch.float16, False) if precision == "16" else resolve(device, precision, conv_model))


def _metrics(path):
    with open(path) as f:
        return [{k: v for k, v in r.items() if k != "epoch_seconds"} for r in csv.DictReader(f)]


def test_fp16_trains_with_a_grad_scaler_whose_state_is_checkpointed_and_resumed(tmp_path, monkeypatch):
    _fp16_on_cpu(monkeypatch)
    steps = []
    step = torch.amp.GradScaler.step
    monkeypatch.setattr(torch.amp.GradScaler, "step", lambda self, *a, **k: (steps.append(1), step(self, *a, **k))[1])
    groups = {"trainer": {"max_epochs": 4, "precision": "16"}, "early_stop": {"patience": 50}}
    whole = run(make_config(**groups), tmp_path / "whole", overrides=[])
    assert whole.report["run"]["precision"] == "16" and steps  # every optimizer step went through the scaler
    state = checkpoint.load(tmp_path / "whole" / "checkpoints" / "last.pt")["scaler"]
    assert state is not None and state["scale"] > 0
    run(make_config(trainer={"max_epochs": 2, "precision": "16"}, early_stop={"patience": 50}), tmp_path / "first",
        overrides=[])
    first = checkpoint.load(tmp_path / "first" / "checkpoints" / "last.pt")["scaler"]
    assert first["_growth_tracker"] > 0  # the scaler's own state moved: a resume must carry it on
    run(make_config(trainer={"max_epochs": 4, "precision": "16", "resume": str(tmp_path / "first")},
                    early_stop={"patience": 50}), tmp_path / "resumed", overrides=[])
    assert _metrics(tmp_path / "whole" / "metrics.csv") == _metrics(tmp_path / "resumed" / "metrics.csv")
    resumed = checkpoint.load(tmp_path / "resumed" / "checkpoints" / "last.pt")["scaler"]
    assert resumed == state

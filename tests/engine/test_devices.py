"""Device and precision resolution, and the CUDA-only speed switches checked for numerics on the CPU."""

from __future__ import annotations

import copy

import pytest
import torch

from dlrun.config import LeNetConfig, RegConfig
from dlrun.engine import devices
from dlrun.errors import DlrunError
from dlrun.models import build


def test_auto_on_a_cpu_machine_is_cpu_fp32_without_channels_last(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    rt = devices.resolve("auto", "auto", conv_model=True)
    assert rt.device.type == "cpu" and rt.amp_dtype is None and not rt.channels_last and rt.precision == "32"


def test_explicit_bf16_on_cpu_autocasts():
    rt = devices.resolve("cpu", "bf16")
    with rt.autocast():
        out = torch.nn.Linear(4, 4)(torch.ones(2, 4))
    assert out.dtype == torch.bfloat16


def test_cuda_requested_without_a_gpu_is_a_user_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DlrunError, match="trainer.device=cuda but no CUDA GPU"):
        devices.resolve("cuda", "auto")


def test_torchrun_environment_gives_the_rank(monkeypatch):
    monkeypatch.setenv("RANK", "3")
    monkeypatch.setenv("WORLD_SIZE", "4")
    rt = devices.resolve("cpu", "32")
    assert (rt.rank, rt.world_size, rt.is_main) == (3, 4, False)


def test_channels_last_changes_nothing_numerically():
    torch.manual_seed(0)
    model = build(LeNetConfig(), (3, 32, 32), 7, RegConfig())
    other = copy.deepcopy(model).to(memory_format=torch.channels_last)
    x = torch.randn(8, 3, 32, 32)
    a = model(x)
    b = other(x.contiguous(memory_format=torch.channels_last))
    assert torch.allclose(a, b, atol=1e-5)
    a.sum().backward()
    b.sum().backward()
    for (name, p), q in zip(model.named_parameters(), other.parameters()):
        assert torch.allclose(p.grad, q.grad, atol=1e-4), name


def test_threads_auto_uses_the_cpus_granted_not_the_cores_of_the_node(monkeypatch):
    import os

    from dlrun.engine.devices import cpu_threads

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)), raising=False)
    assert cpu_threads("auto", environ={}) == 8
    assert cpu_threads("auto", environ={"SLURM_CPUS_PER_TASK": "3"}) == 3  # Slurm's grant caps the affinity
    assert cpu_threads("auto", environ={"LOCAL_WORLD_SIZE": "4"}) == 2  # torchrun: shared by the node's processes
    assert cpu_threads("auto", environ={"SLURM_CPUS_PER_TASK": "2", "LOCAL_WORLD_SIZE": "4"}) == 1  # at least one
    assert cpu_threads("auto", environ={"OMP_NUM_THREADS": "1"}) == 1  # joblib's workers, or the user, capped it
    assert cpu_threads("auto", environ={"OMP_NUM_THREADS": "16"}) == 8  # a cap, never more than granted
    assert cpu_threads("auto", environ={"OMP_NUM_THREADS": ""}) == 8
    assert cpu_threads("5", environ={"OMP_NUM_THREADS": "1"}) == 5  # an explicit number is the user's
    assert cpu_threads("5", environ={}) == 5 and cpu_threads(None) is None


def test_threads_auto_is_the_default_and_reaches_torch(tmp_path, monkeypatch):
    import os

    import torch

    from dlrun.config import TrainerConfig
    from dlrun.pipeline import _setup

    assert TrainerConfig().threads == "auto"
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0}, raising=False)
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(2)
        _setup(TrainerConfig())
        assert torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


def test_threads_auto_leaves_a_core_to_the_sweeps_plot_helper(monkeypatch):
    import os

    import torch

    from dlrun.config import TrainerConfig
    from dlrun.pipeline import _setup
    from dlrun.report import background

    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2}, raising=False)
    monkeypatch.delenv("SLURM_CPUS_PER_TASK", raising=False)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(background, "enabled", lambda: True)
    before = torch.get_num_threads()
    try:
        _setup(TrainerConfig())
        assert torch.get_num_threads() == 2
        _setup(TrainerConfig(threads="3"))  # a number the user chose is kept
        assert torch.get_num_threads() == 3
    finally:
        torch.set_num_threads(before)

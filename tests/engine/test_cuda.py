"""The CUDA paths on a real GPU: fp16 with a GradScaler, native bf16, channels_last, and the streamed DataLoader path
with augmentation and mixup drawing on the GPU. Skipped where there is no GPU (CI has none); their CPU-side logic is
tested in test_precision.py. Run them on a GPU machine with `pytest -m cuda`."""

from __future__ import annotations

import math

import pytest
import torch

from dlrun import data, models
from dlrun.config import AugmentConfig
from dlrun.engine import devices, fit
from dlrun.pipeline import run
from tests.conftest import make_config

pytestmark = [pytest.mark.cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")]


def _fit(cfg, **kw):
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    torch.manual_seed(0)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    return model, fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer, **kw)


def test_fp16_uses_a_grad_scaler_and_trains(tmp_path):
    result = run(make_config(trainer={"max_epochs": 3, "precision": "16", "device": "cuda"}), tmp_path, overrides=[])
    assert result.report["run"]["precision"] == "16"
    state = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)["scaler"]
    assert state is not None and state["scale"] > 0
    assert result.report["metrics"]["val"]["error"] < 0.2


def test_auto_precision_is_bf16_only_on_native_hardware():
    rt = devices.resolve("cuda", "auto")
    assert rt.precision == ("bf16" if devices.native_bf16() else "32")


def test_channels_last_for_a_conv_model():
    from dlrun.config import LeNetConfig

    cfg = make_config(model=LeNetConfig(), trainer={"max_epochs": 1, "device": "cuda"})
    model, history = _fit(cfg)
    assert devices.resolve("cuda", "auto", conv_model=True).channels_last
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    assert math.isfinite(history.rows[-1]["train_loss"])


def test_streamed_path_with_augmentation_and_mixup_draws_on_the_gpu():
    cfg = make_config(trainer={"max_epochs": 2, "device": "cuda"},
                      reg={"augment": AugmentConfig(noise=0.2, mixup=0.4)})
    _, history = _fit(cfg, loader="dataloader", num_workers=0)
    assert all(math.isfinite(r["train_loss"]) for r in history.rows)

"""Engine benchmark: the two models of the issue and the three contenders that train them.

1. hand_fit: the minimal hand-written PyTorch loop (the baseline every ratio divides by)
2. dlrun_fit: dlrun's engine, as the pipeline calls it (run folder, default checkpoint_every, TensorBoard on)
3. lightning_fit: PyTorch Lightning's Trainer with a DataLoader, in its fastest configuration (barebones=True:
   no logging, checkpointing, progress bar, model summary or sanity check); skipped when Lightning is missing

Each trains the given model for `epochs` epochs and returns (seconds of each epoch, last validation loss); an
epoch is the train pass plus validation, up to the host read of the validation loss.
"""

from __future__ import annotations

import logging
import math
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from dlrun import config as c
from dlrun import models
from dlrun.console import TerminalUI
from dlrun.engine import fit
from dlrun.models.registry import Net

from .settings import DEVICE, SETTINGS

# ----------------------------------------------------------------------------------------------------------------------
# the two models of the issue, as dlrun Nets so fit() takes them


def build_mlp(in_shape: tuple[int, ...] = (1, 8, 8), width: int = 256) -> Net:
    """64-256-256-10 MLP, no dropout, built by dlrun's registry (the model `dlrun model=mlp` trains)."""
    torch.manual_seed(SETTINGS["seed"])
    return models.build(c.MLPConfig(hidden=[width, width]), in_shape, 10, c.RegConfig())


def build_cnn(in_shape: tuple[int, ...] = (1, 8, 8)) -> Net:
    """A small CNN (not a registered dlrun model): two 3x3 convs, max-pool, fc 128 with dropout 0.25, fc 10."""
    torch.manual_seed(SETTINGS["seed"])
    channels, height, width = in_shape
    features = nn.Sequential(
        nn.Conv2d(channels, 32, 3, padding=1), nn.ReLU(),  # (N, 32, 8, 8)
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(),  # (N, 64, 8, 8)
        nn.MaxPool2d(2), nn.Flatten(),  # (N, 64 * 4 * 4)
        nn.Linear(64 * (height // 2) * (width // 2), 128), nn.ReLU(), nn.Dropout(0.25))  # (N, 128)
    return Net(features, nn.Linear(128, 10))


CASES = {"mlp": build_mlp, "cnn": build_cnn}


# ----------------------------------------------------------------------------------------------------------------------
# contender 1: the minimal hand-written loop


def hand_fit(model: nn.Module, splits, epochs: int, *, train_metrics: bool = False, param_groups: bool = False,
             fused: bool = False) -> tuple[list[float], float]:
    """Train `epochs` epochs; returns (epoch seconds, last val loss). The flags add one piece of dlrun's work each:
    train_metrics: keep each batch's loss and wrong count as tensors (fit's train_loss/train_error columns);
    param_groups: two Adam groups, weights and biases (fit's weight-decay split); fused: Adam(fused=True)."""
    batch_size, eval_batch = SETTINGS["batch_size"], SETTINGS["eval_batch"]
    x_train, y_train = splits.train.x.to(DEVICE), splits.train.y.to(DEVICE)
    x_val, y_val = splits.val.x.to(DEVICE), splits.val.y.to(DEVICE)
    model.to(DEVICE)
    params = list(model.parameters())
    if param_groups:
        params = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": 0.0},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    optimizer = torch.optim.Adam(params, lr=SETTINGS["lr"], fused=True if fused else None)
    gen = torch.Generator(device=DEVICE)
    gen.manual_seed(SETTINGS["seed"])
    n_train, n_val = len(y_train), len(y_val)
    epoch_seconds, val_loss = [], math.nan
    for _ in range(epochs):
        t0 = time.perf_counter()
        model.train()
        perm = torch.randperm(n_train, device=DEVICE, generator=gen)
        losses, wrong = [], []
        for start in range(0, n_train, batch_size):
            idx = perm[start:start + batch_size]
            x, y = x_train[idx], y_train[idx]
            out = model(x)  # (B, 10)
            loss = F.cross_entropy(out, y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if train_metrics:
                losses.append(loss.detach())
                wrong.append((out.detach().argmax(dim=1) != y).sum())
        model.eval()
        val_sum = torch.zeros((), device=DEVICE)
        with torch.no_grad():
            for start in range(0, n_val, eval_batch):
                val_sum += F.cross_entropy(model(x_val[start:start + eval_batch]), y_val[start:start + eval_batch],
                                           reduction="sum")
        if train_metrics:  # as fit(): the train figures are read together with validation's, in one sync
            figures = torch.stack([val_sum, torch.stack(losses).mean(), torch.stack(wrong).sum().float()]).tolist()
            val_loss = figures[0] / n_val
        else:
            val_loss = val_sum.item() / n_val  # the one host sync per epoch
        epoch_seconds.append(time.perf_counter() - t0)
    return epoch_seconds, val_loss


# ----------------------------------------------------------------------------------------------------------------------
# contender 2: dlrun's engine


def dlrun_fit(model: nn.Module, splits, epochs: int, out_dir: Path) -> tuple[list[float], float]:
    trainer = c.TrainerConfig(max_epochs=epochs, batch_size=SETTINGS["batch_size"], device="auto",
                              progress="false", threads=SETTINGS["threads"], seed=SETTINGS["seed"])
    history = fit(model, splits, c.OptimConfig(lr=SETTINGS["lr"]), c.SchedConfig(), c.RegConfig(),
                  c.EarlyStopConfig(patience=SETTINGS["patience"]), trainer, out_dir=out_dir,
                  on_epoch=TerminalUI("false").on_epoch)  # the CLI's callback, display off
    if history.epochs_run != epochs:  # a bug in this benchmark: every contender must run the same epochs
        raise RuntimeError(f"fit stopped after {history.epochs_run} of {epochs} epochs: {history.stop_reason}")
    return [row["epoch_seconds"] for row in history.rows], history.rows[-1]["val_loss"]


# ----------------------------------------------------------------------------------------------------------------------
# contender 3: PyTorch Lightning's Trainer


def lightning_available() -> str | None:
    """Lightning's version, or None when it is not installed (pip install lightning)."""
    try:
        import lightning
    except ImportError:
        return None
    return lightning.__version__


def lightning_fit(model: nn.Module, splits, epochs: int) -> tuple[list[float], float]:
    import lightning as L
    from torch.utils.data import DataLoader, TensorDataset

    for name in ("lightning.pytorch", "lightning.fabric"):  # set on import by Lightning itself: quiet it after
        logging.getLogger(name).setLevel(logging.ERROR)
    pin = DEVICE.type == "cuda"
    train = DataLoader(TensorDataset(splits.train.x, splits.train.y), batch_size=SETTINGS["batch_size"], shuffle=True,
                       generator=torch.Generator().manual_seed(SETTINGS["seed"]), pin_memory=pin)
    val = DataLoader(TensorDataset(splits.val.x, splits.val.y), batch_size=SETTINGS["eval_batch"], pin_memory=pin)
    module_class, timer_class = _lightning_classes(L)
    timer = timer_class(len(splits.val))
    trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=epochs, barebones=True, callbacks=[timer])
    trainer.fit(module_class(model), train, val)
    return timer.seconds, timer.val_loss


def _lightning_classes(L):
    """The LightningModule wrapping a net, and the callback that times epochs the way the other two do."""

    class Module(L.LightningModule):
        def __init__(self, net: nn.Module):
            super().__init__()
            self.net = net
            self.val_sum = None

        def training_step(self, batch, batch_idx):
            x, y = batch
            return F.cross_entropy(self.net(x), y)

        def on_validation_epoch_start(self):
            self.val_sum = torch.zeros((), device=self.device)

        def validation_step(self, batch, batch_idx):
            x, y = batch
            self.val_sum += F.cross_entropy(self.net(x), y, reduction="sum")

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=SETTINGS["lr"])

    class EpochTimer(L.Callback):
        """The same span as the other two: train epoch start to the end of validation, after the host read."""

        def __init__(self, n_val: int):
            self.n_val, self.seconds, self.val_loss, self.t0 = n_val, [], math.nan, 0.0

        def on_train_epoch_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):  # callbacks run before the module's own hook
            self.val_loss = module.val_sum.item() / self.n_val
            self.seconds.append(time.perf_counter() - self.t0)

    return Module, EpochTimer

"""The training loop: fast path, restore-best, checkpoints, resume equality, divergence, regularisers."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dlrun
from dlrun import data, models
from dlrun.engine import evaluate, fit
from dlrun.engine.loop import COLUMNS
from dlrun.pipeline import run
from tests.conftest import make_config


def _fit(cfg, out_dir=None, **kw):
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    torch.manual_seed(cfg.trainer.seed)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer, out_dir=out_dir, **kw)
    return model, splits, history


def _metrics(path):
    with open(path) as f:
        return list(csv.DictReader(f))


# the package's own files, by resolved path: a checkout in a folder named `dlrun` holds torch in dlrun/.venv/,
# so a substring test on "/dlrun/" would count torch's own syncs too
PACKAGE_DIR = Path(dlrun.__file__).resolve().parent


def test_in_memory_path_builds_no_dataloader_and_syncs_once_per_epoch(monkeypatch):
    cfg = make_config(trainer={"max_epochs": 2})
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)

    def no_loader(*a, **k):
        raise AssertionError("the in-memory path must not build a DataLoader")

    monkeypatch.setattr(torch.utils.data.DataLoader, "__init__", no_loader)
    calls = {"n": 0}
    for name in ("item", "cpu", "tolist", "numpy"):
        original = getattr(torch.Tensor, name)

        def counted(self, *a, _original=original, **k):
            # count the engine's own host syncs (torch's Adam reads its CPU step counter with .item())
            if Path(sys._getframe(1).f_code.co_filename).resolve().is_relative_to(PACKAGE_DIR):
                calls["n"] += 1
            return _original(self, *a, **k)

        monkeypatch.setattr(torch.Tensor, name, counted)
    history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer)
    batches = math.ceil(len(splits.train) / cfg.trainer.batch_size)
    assert history.epochs_run == 2
    # per epoch one .tolist() for the metrics and one for the health probe, plus one .cpu() per weight layer when the
    # checkpoint is written (the probe's previous weights): never one per batch
    assert 2 <= calls["n"] <= 2 * 2 + 2 < batches


def test_learns_digits_and_history_has_every_column():
    cfg = make_config(trainer={"max_epochs": 5})
    model, splits, history = _fit(cfg)
    assert [set(r) for r in history.rows] == [set(COLUMNS)] * 5
    assert history.rows[-1]["train_loss"] < history.rows[0]["train_loss"]
    assert evaluate(model, splits, cfg.trainer).splits["val"].error < 0.2


def test_restore_best_puts_the_best_epoch_back(tmp_path):
    # a learning rate that makes val_loss bounce, patience long enough to run past the best epoch
    cfg = make_config(trainer={"max_epochs": 12, "checkpoint_every": 0.0}, optim={"lr": 0.03},
                      early_stop={"patience": 4})
    model, splits, history = _fit(cfg, out_dir=tmp_path)
    val_losses = [r["val_loss"] for r in history.rows]
    assert history.best_epoch == int(np.argmin(val_losses)) + 1
    assert history.best_epoch < history.epochs_run  # else restoring would prove nothing
    best = torch.load(tmp_path / "checkpoints" / "best.pt", weights_only=True)
    assert best["epoch"] == history.best_epoch
    for key, value in model.state_dict().items():
        assert torch.equal(value.cpu(), best["model"][key])
    ev = evaluate(model, splits, cfg.trainer)
    assert ev.splits["val"].loss == pytest.approx(min(val_losses), rel=1e-4)


def test_checkpoints_load_with_weights_only_and_are_written_atomically(tmp_path):
    cfg = make_config(trainer={"max_epochs": 2})
    _fit(cfg, out_dir=tmp_path, meta={"norm_mean": torch.zeros(1), "overrides": ["a=b"]})
    last = torch.load(tmp_path / "checkpoints" / "last.pt", weights_only=True)
    assert last["epoch"] == 2 and len(last["history"]) == 2 and last["meta"]["overrides"] == ["a=b"]
    assert {"model", "optimizer", "scheduler", "early_stop", "rng"} <= set(last)
    assert not list((tmp_path / "checkpoints").glob("*.tmp"))  # no temp file left behind
    rows = _metrics(tmp_path / "metrics.csv")
    assert [int(r["epoch"]) for r in rows] == [1, 2] and list(rows[0]) == list(COLUMNS)


@pytest.mark.parametrize("sched", ["none", "step", "plateau"])
def test_resume_ends_with_the_same_metrics_as_an_uninterrupted_run(tmp_path, sched):
    groups = {"sched": {"name": sched, "step_size": 2}, "reg": {"dropout": 0.2},
              "early_stop": {"patience": 50}}
    whole = run(make_config(trainer={"max_epochs": 6}, **groups), tmp_path / "whole", overrides=[])
    first = run(make_config(trainer={"max_epochs": 3}, **groups), tmp_path / "first", overrides=[])
    assert first.report["run"]["epochs_run"] == 3
    resumed = run(make_config(trainer={"max_epochs": 6, "resume": str(tmp_path / "first")}, **groups),
                  tmp_path / "resumed", overrides=[])
    a, b = _metrics(tmp_path / "whole" / "metrics.csv"), _metrics(tmp_path / "resumed" / "metrics.csv")
    assert len(a) == len(b) == 6
    for ra, rb in zip(a, b):
        assert {k: ra[k] for k in COLUMNS if k != "epoch_seconds"} == \
               {k: rb[k] for k in COLUMNS if k != "epoch_seconds"}
    assert whole.report["metrics"] == resumed.report["metrics"]


def test_resume_refuses_a_different_model(tmp_path):
    from dlrun.errors import DlrunError

    run(make_config(trainer={"max_epochs": 1}), tmp_path / "a", overrides=["model.hidden=[64]"])
    with pytest.raises(DlrunError, match=r"model.hidden=\[64\] \(now \[32\]\).*dlrun model.hidden=\[64\]"):
        run(make_config(model=_mlp([32]), trainer={"max_epochs": 2, "resume": str(tmp_path / "a")}),
            tmp_path / "b", overrides=[])


def _mlp(hidden):
    from dlrun.config import MLPConfig

    return MLPConfig(hidden=hidden)


def test_divergence_stops_cleanly_and_still_reports(tmp_path):
    cfg = make_config(optim={"name": "sgd", "lr": 1e8, "momentum": 0.0}, trainer={"max_epochs": 20})
    result = run(cfg, tmp_path, overrides=["optim=sgd", "optim.lr=1e8"])
    report = result.report
    assert report["run"]["stop_reason"] == "diverged"
    assert report["run"]["epochs_run"] < 20
    assert (tmp_path / "report.json").is_file() and (tmp_path / "checkpoints" / "last.pt").is_file()
    under = report["diagnosis"]["underfitting"]
    assert under["detected"] and under["severity"] == "severe"
    assert "optim.lr=0.01" in under["actions"][0]["command"]  # sgd's usual default, not 1e8 / 10
    # no epoch ended finite: no best epoch (0), no best.pt, and the report does not name one
    assert report["run"]["epochs_run"] == 1 and report["run"]["best_epoch"] == 0
    assert not (tmp_path / "checkpoints" / "best.pt").exists()
    assert "no finite epoch" in (tmp_path / "report.md").read_text()


def test_frozen_parameters_are_not_in_the_optimizer():
    from dlrun.engine.loop import make_optimizer

    cfg = make_config()
    model = models.build(cfg.model, (1, 8, 8), 10, cfg.reg)
    for p in model.features.parameters():
        p.requires_grad_(False)
    opt = make_optimizer(model, cfg.optim, 0.0)
    in_opt = {id(p) for g in opt.param_groups for p in g["params"]}
    assert in_opt == {id(p) for p in model.head.parameters()}


def test_weight_decay_and_l1_shrink_the_weights():
    norms = {}
    for name, reg in {"none": {}, "l2": {"weight_decay": 0.5}, "l1": {"l1": 1e-2}}.items():
        cfg = make_config(reg=reg, trainer={"max_epochs": 3}, early_stop={"enabled": False})
        model, _, _ = _fit(cfg)
        norms[name] = sum(float(p.detach().abs().sum()) for p in model.parameters() if p.ndim >= 2)
    assert norms["l2"] < 0.8 * norms["none"] and norms["l1"] < 0.8 * norms["none"]


def test_bf16_autocast_on_cpu_matches_fp32_within_tolerance(monkeypatch):
    results, dtypes = {}, {}
    linear_forward = torch.nn.Linear.forward

    def recording(self, x):
        out = linear_forward(self, x)
        dtypes.setdefault(precision, set()).add(out.dtype)
        return out

    monkeypatch.setattr(torch.nn.Linear, "forward", recording)
    for precision in ("32", "bf16"):
        cfg = make_config(trainer={"max_epochs": 2, "precision": precision})
        model, splits, history = _fit(cfg)
        assert history.precision == precision
        results[precision] = evaluate(model, splits, cfg.trainer).splits["val"]
    # the matrix products really ran in bf16 (and only there), and the result is close to fp32's
    assert dtypes == {"32": {torch.float32}, "bf16": {torch.bfloat16}}
    assert results["32"].loss != results["bf16"].loss
    assert abs(results["32"].loss - results["bf16"].loss) < 0.1
    assert abs(results["32"].error - results["bf16"].error) < 0.05


def test_fp16_on_cpu_is_a_user_error():
    from dlrun.errors import DlrunError

    with pytest.raises(DlrunError, match="trainer.precision=16 needs a CUDA GPU"):
        _fit(make_config(trainer={"max_epochs": 1, "precision": "16"}))


@pytest.mark.parametrize("num_workers", [0, 2])
def test_dataloader_path_gives_the_same_training_as_the_in_memory_path(num_workers):
    cfg = make_config(trainer={"max_epochs": 2}, reg={"dropout": 0.1})
    results = {}
    for loader in ("memory", "dataloader"):
        splits = data.load(cfg.dataset, cfg.split, cfg.shift)
        torch.manual_seed(0)
        model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
        history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer, loader=loader,
                      num_workers=num_workers)
        results[loader] = [r[k] for r in history.rows for k in ("train_loss", "val_loss")]
    assert results["memory"] == pytest.approx(results["dataloader"], rel=1e-5)


def test_auto_loader_keeps_data_in_memory_on_the_cpu():
    from dlrun.engine.loop import choose_loader

    splits = data.load(make_config().dataset, make_config().split)
    assert choose_loader("auto", splits, torch.device("cpu")) == "memory"


def test_auto_loader_streams_data_that_would_take_more_than_a_quarter_of_the_gpu(monkeypatch):
    from types import SimpleNamespace

    from dlrun.engine.loop import choose_loader

    splits = data.load(make_config().dataset, make_config().split)
    size = sum(s.x.element_size() * s.x.nelement() for s in (splits.train, splits.val))
    for total, expected in ((4 * size, "memory"), (4 * size - 4, "dataloader"), (100 * size, "memory")):
        monkeypatch.setattr(torch.cuda, "get_device_properties", lambda d, t=total: SimpleNamespace(total_memory=t))
        assert choose_loader("auto", splits, torch.device("cuda")) == expected, total


def test_augmentation_touches_training_batches_only(monkeypatch):
    import dlrun.data.augment as augment

    seen = []
    original = augment.build_augment

    def recording(cfg, in_shape):
        fn = original(cfg, in_shape)

        def wrapped(x, gen):
            seen.append(x.shape[0])
            return fn(x, gen)
        return wrapped

    monkeypatch.setattr(augment, "build_augment", recording)
    cfg = make_config(trainer={"max_epochs": 2, "batch_size": 50}, reg={"augment": _augment(noise=0.5)})
    model, splits, history = _fit(cfg)
    n_batches = math.ceil(len(splits.train) / 50)
    assert len(seen) == 2 * n_batches and max(seen) == 50  # every training batch, nothing else
    # evaluation is untouched: evaluating twice gives identical figures (no random noise added)
    a = evaluate(model, splits, cfg.trainer).splits["val"].loss
    b = evaluate(model, splits, cfg.trainer).splits["val"].loss
    assert a == b


def test_augmented_training_is_reproducible_from_the_seed():
    cfg = make_config(trainer={"max_epochs": 2}, reg={"augment": _augment(noise=0.3, rotation=10.0, hflip=True)})
    first = [r["train_loss"] for r in _fit(cfg)[2].rows]
    second = [r["train_loss"] for r in _fit(cfg)[2].rows]
    other = [r["train_loss"] for r in _fit(make_config(trainer={"max_epochs": 2, "seed": 1},
                                                       reg={"augment": _augment(noise=0.3, rotation=10.0,
                                                                                hflip=True)}))[2].rows]
    assert first == second and first != other


def test_mixup_mixes_every_training_batch_and_still_trains(monkeypatch):
    import dlrun.data.augment as augment

    calls = []
    original = augment.mixup
    monkeypatch.setattr(augment, "mixup", lambda x, y, a, g: (calls.append(a), original(x, y, a, g))[1])
    cfg = make_config(trainer={"max_epochs": 3}, reg={"augment": _augment(mixup=0.4)})
    _, splits, history = _fit(cfg)
    assert calls == [0.4] * 3 * math.ceil(len(splits.train) / cfg.trainer.batch_size)
    assert all(math.isfinite(r["train_loss"]) for r in history.rows)
    assert history.rows[-1]["val_loss"] < history.rows[0]["val_loss"]
    plain = _fit(make_config(trainer={"max_epochs": 3}))[2]
    # mixed targets make the training loss higher than on clean batches
    assert history.rows[-1]["train_loss"] > plain.rows[-1]["train_loss"]


def _augment(**kw):
    from dlrun.config import AugmentConfig

    return AugmentConfig(**kw)


def test_tensorboard_event_file_holds_every_epoch(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    cfg = make_config(trainer={"max_epochs": 3, "tensorboard": True})
    _, _, history = _fit(cfg, out_dir=tmp_path)
    events = EventAccumulator(str(tmp_path))
    events.Reload()
    assert {"train/loss", "train/error", "val/loss", "val/error", "opt/lr"} <= set(events.Tags()["scalars"])
    val_loss = [e.value for e in events.Scalars("val/loss")]
    assert [e.step for e in events.Scalars("val/loss")] == [1, 2, 3]
    assert val_loss == pytest.approx([r["val_loss"] for r in history.rows], rel=1e-6)


def test_fused_adam_trains_like_the_default_one(monkeypatch):
    from dlrun.engine import loop

    built = []
    make = loop.make_optimizer
    monkeypatch.setattr(loop, "make_optimizer", lambda *a: (built.append(make(*a)), built[-1])[1])
    losses = {}
    for fused in (False, True):
        _, _, history = _fit(make_config(trainer={"max_epochs": 3}, optim={"fused": fused}))
        losses[fused] = [r["val_loss"] for r in history.rows]
    assert [bool(o.defaults.get("fused")) for o in built] == [False, True]  # the fused kernels really ran
    assert losses[True] == pytest.approx(losses[False], rel=1e-3)


def test_evaluate_runs_in_eval_mode_with_dropout_and_batchnorm():
    cfg = make_config(trainer={"max_epochs": 2}, reg={"dropout": 0.5, "batchnorm": True})
    model, splits, _ = _fit(cfg)
    model.train()  # evaluate() must switch to eval mode itself
    first = evaluate(model, splits, cfg.trainer).splits["val"]
    second = evaluate(model, splits, cfg.trainer).splits["val"]
    assert not model.training
    assert np.array_equal(first.sample_loss, second.sample_loss)  # no dropout mask, no batch statistics
    with torch.no_grad():
        manual = torch.nn.functional.cross_entropy(model.eval()(splits.val.x), splits.val.y, reduction="none")
    assert np.allclose(first.sample_loss, manual.numpy(), atol=1e-6)
    with torch.no_grad():  # and it differs from a forward in train mode, so the check above can fail
        noisy = torch.nn.functional.cross_entropy(model.train()(splits.val.x), splits.val.y, reduction="none")
    assert not np.allclose(first.sample_loss, noisy.numpy(), atol=1e-6)


def test_evaluate_keeps_features_of_a_random_subset_not_the_first_rows():
    cfg = make_config(trainer={"max_epochs": 1})
    model, splits, _ = _fit(cfg)
    val = evaluate(model, splits, cfg.trainer, max_features=50).splits["val"]
    with torch.no_grad():
        every = model.eval().features(splits.val.x).flatten(1).numpy()  # (n, D)
    assert val.features.shape == (50, every.shape[1])
    first = every[:50]
    assert not np.allclose(val.features, first)  # a class-sorted source would make the first rows one class
    matches = [int(np.argmin(np.abs(every - row).sum(axis=1))) for row in val.features]
    assert len(set(matches)) == 50 and max(matches) > 200  # distinct rows from across the whole split
    again = evaluate(model, splits, cfg.trainer, max_features=50).splits["val"]
    assert np.array_equal(val.features, again.features)  # seeded: the same subset every time


@pytest.mark.parametrize("limit,steps", [(None, 17), (3, 3), (0.5, 9), (1.0, 17), (100, 17)])
def test_limit_train_batches_counts_or_fractions_the_steps_of_an_epoch(limit, steps):
    cfg = make_config(trainer={"max_epochs": 1, "limit_train_batches": limit})
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    seen = {"train": 0, "eval": 0}
    model.register_forward_hook(lambda m, i, o: seen.__setitem__("train" if m.training else "eval",
                                                                 seen["train" if m.training else "eval"] + 1))
    fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer)
    assert len(splits.train) == 1077 and seen["train"] == steps  # 1077 / 64 -> 17 batches


def test_limit_val_batches_validates_on_a_fixed_subset_and_the_report_on_everything(tmp_path):
    cfg = make_config(trainer={"max_epochs": 2, "limit_val_batches": 2}, report={"plots": False})
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    rows = []
    model.register_forward_hook(lambda m, i, o: rows.append(len(i[0])) if not m.training else None)
    fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer)
    assert sum(rows) == 2 * 2 * 64  # two epochs of 2 batches of trainer.batch_size, not the 360 validation rows
    result = run(cfg, tmp_path, overrides=[])
    assert result.report["metrics"]["val"]["n"] == len(splits.val) == 360

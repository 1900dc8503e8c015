"""The training loop: fit() trains with early stopping and checkpoints; evaluate() measures every split.

Hot-path rules, after KellerJordan/cifar10-airbench: the data lives on the device, a batch is a slice of a
`randperm`, metrics stay tensors until the epoch ends (one host sync per epoch, for early stopping), and
nothing is written to disk or logged per batch. Disk writes (checkpoints, metrics.csv, TensorBoard) happen
at most every `trainer.checkpoint_every` seconds, at the end, and on SIGINT/SIGTERM/SIGUSR2 (Slurm's warning signal
as submitit asks for it: `--signal=USR2@SECONDS`).
"""

from __future__ import annotations

import contextlib
import csv
import io
import logging
import math
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dlrun.engine import checkpoint, devices, health
from dlrun.engine.early_stopping import EarlyStopping
from dlrun.errors import DlrunError

log = logging.getLogger(__name__)

COLUMNS = ("epoch", "train_loss", "train_error", "val_loss", "val_error", "lr", "epoch_seconds")
TB_TAGS = {"train_loss": "train/loss", "train_error": "train/error", "val_loss": "val/loss", "val_error": "val/error",
           "lr": "opt/lr"}
STOP_REASONS = ("patience", "max_epochs", "diverged", "divergence_threshold", "interrupted", "baseline", "threshold")


@dataclass
class History:
    rows: list[dict[str, float]]  # one per epoch, keys COLUMNS
    best_epoch: int  # 1-based epoch whose weights the model holds at the end (0: none was finite)
    stop_reason: str  # one of STOP_REASONS
    wall_seconds: float  # fit() from start to end, checkpoints included
    device: str
    precision: str
    signal: Optional[int] = None  # the signal that interrupted the run
    held: Optional[int] = None  # a signal that came when the run had nothing left to train: the run is finished
    notes: list[str] = field(default_factory=list)  # what the user should know about how the run went
    rank: int = 0  # this process under torchrun
    world_size: int = 1  # processes that trained together (DDP)
    dynamics: list[dict] = field(default_factory=list)  # training-health probes (engine/health.py), dynamics.csv
    resumed_from: int = 0  # epochs a resumed run had finished before this session (wall_seconds is this session's)

    @property
    def epochs_run(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> np.ndarray:
        return np.array([row[name] for row in self.rows], dtype=np.float64)


# ----------------------------------------------------------------------------------------------------------------------
# task-specific pieces: the loss, and the per-batch error sum (wrong count, or squared error for regression)


def loss_fn(task: str) -> Callable[..., torch.Tensor]:
    if task == "classification":
        return F.cross_entropy
    return lambda out, y, reduction="mean": F.mse_loss(out.squeeze(-1), y, reduction=reduction)


def error_sum(task: str, out: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Misclassified count (classification) or sum of squared errors (regression), as a 0-d tensor."""
    if task == "classification":
        return (out.argmax(dim=1) != y).sum()
    return (out.squeeze(-1).float() - y).square().sum()


def finish_error(task: str, total: float, n: int, target_scale: float = 1.0) -> float:
    """Error rate (classification, a fraction) or RMSE in the target's units (regression)."""
    if n == 0:
        return float("nan")
    return total / n if task == "classification" else math.sqrt(total / n) * target_scale


# ----------------------------------------------------------------------------------------------------------------------
# optimizer, scheduler


def _decay_split(model: nn.Module) -> tuple[list[nn.Parameter], list[nn.Parameter]]:
    """Weights (matrices, kernels) get weight decay and L1; biases and norm scales do not (standard practice)."""
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (decay if p.ndim >= 2 else no_decay).append(p)
    return decay, no_decay


def make_optimizer(model: nn.Module, optim: Any, weight_decay: float) -> torch.optim.Optimizer:
    decay, no_decay = _decay_split(model)  # frozen parameters are left out entirely
    if not decay and not no_decay:
        raise DlrunError("every parameter is frozen (model.freeze): nothing to train")
    groups = [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    if weight_decay == 0:  # one group: the optimizer's foreach kernels run once per step, not twice
        groups = [{"params": decay + no_decay, "weight_decay": 0.0}]
    fused = True if getattr(optim, "fused", False) else None  # None: torch's default (foreach)
    try:
        if optim.name == "sgd":
            return torch.optim.SGD(groups, lr=optim.lr, momentum=optim.momentum, nesterov=optim.nesterov, fused=fused)
        cls = torch.optim.AdamW if optim.name == "adamw" else torch.optim.Adam
        return cls(groups, lr=optim.lr, betas=tuple(optim.betas), fused=fused)
    except RuntimeError as err:  # an older torch or a device without fused kernels
        raise DlrunError(f"optim.fused=true is not available here ({err}); use optim.fused=false") from None


def make_scheduler(optimizer: torch.optim.Optimizer, sched: Any, max_epochs: int):
    if sched.name == "step":
        return torch.optim.lr_scheduler.StepLR(optimizer, step_size=sched.step_size, gamma=sched.gamma)
    if sched.name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max_epochs, eta_min=sched.min_lr)
    if sched.name == "plateau":
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, factor=sched.gamma, patience=sched.patience,
                                                          min_lr=sched.min_lr)
    return None


# ----------------------------------------------------------------------------------------------------------------------
# signals: finish the current batch, then save and stop


class _StopFlag:
    def __init__(self) -> None:
        self.signal: Optional[int] = None


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM) + ((signal.SIGUSR2,) if hasattr(signal, "SIGUSR2") else ())


@contextlib.contextmanager
def catch_signals(doing: str = "finishing the current batch, then saving"):
    """SIGINT/SIGTERM/SIGUSR2 set the yielded flag (and log `doing`); a second one raises KeyboardInterrupt at once.

    SIGUSR2 is the warning a Slurm job gets before its time limit (submitit's `--signal=USR2@signal_delay_s`):
    dlrun checkpoints on it like on SIGTERM, and cli.py then hands it to the handler it replaced (submitit's, which
    requeues the job)."""
    flag = _StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag  # signal handlers can only be set from the main thread
        return

    def handler(signum, frame):  # noqa: ARG001
        if flag.signal is not None:  # a second Ctrl-C: the user means it (cli.py names the signal and exits 128 + N)
            raise KeyboardInterrupt(signum)
        flag.signal = signum
        log.warning("received %s: %s", signal.Signals(signum).name, doing)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield flag
    finally:
        for s, h in previous.items():
            signal.signal(s, h)


# ----------------------------------------------------------------------------------------------------------------------
# the run folder: checkpoints, metrics.csv, TensorBoard, written together and rarely


class _RunWriter:
    def __init__(self, out_dir: Optional[Path], tensorboard: bool):
        self.out_dir = out_dir
        self.tensorboard = tensorboard and out_dir is not None
        self._tb = None
        self._tb_rows = 0

    def write(self, rows: list[dict], last: Optional[dict], best: Optional[dict],
              dynamics: Optional[list[dict]] = None) -> None:
        if self.out_dir is None:
            return
        if last is not None:
            checkpoint.save(self.out_dir / "checkpoints" / "last.pt", last)
        if best is not None:
            checkpoint.save(self.out_dir / "checkpoints" / "best.pt", best)
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        for row in rows:
            writer.writerow({k: (int(row[k]) if k == "epoch" else repr(float(row[k]))) for k in COLUMNS})
        checkpoint.atomic_write_text(self.out_dir / "metrics.csv", buf.getvalue())
        if dynamics:
            buf = io.StringIO()
            writer = csv.DictWriter(buf, fieldnames=health.DYNAMICS_COLUMNS, lineterminator="\n")
            writer.writeheader()
            writer.writerows(dynamics)
            checkpoint.atomic_write_text(self.out_dir / "dynamics.csv", buf.getvalue())
        self._write_tensorboard(rows)

    def _write_tensorboard(self, rows: list[dict]) -> None:
        if not self.tensorboard or self._tb_rows >= len(rows):
            return
        if self._tb is None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                log.info("tensorboard is not installed: no event files (pip install tensorboard)")
                self.tensorboard = False
                return
            self._tb = SummaryWriter(log_dir=str(self.out_dir))
        from tensorboard.compat.proto.summary_pb2 import Summary

        # one Summary of five values per epoch: a fifth of the cost of five add_scalar calls
        writer = self._tb._get_file_writer()
        for row in rows[self._tb_rows:]:
            values = [Summary.Value(tag=TB_TAGS[key], simple_value=float(row[key])) for key in TB_TAGS]
            writer.add_summary(Summary(value=values), int(row["epoch"]))
        self._tb.flush()
        self._tb_rows = len(rows)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _copy_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def _rng_state(gen: torch.Generator, batch_gen: Optional[torch.Generator] = None) -> dict[str, Any]:
    state = {"torch": torch.get_rng_state(), "shuffle": gen.get_state()}
    if batch_gen is not None and batch_gen is not gen:  # the streamed path's generator on the GPU
        state["batch"] = batch_gen.get_state()
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(gen: torch.Generator, state: dict[str, Any], batch_gen: Optional[torch.Generator] = None) -> None:
    torch.set_rng_state(state["torch"])
    gen.set_state(state["shuffle"])
    if "batch" in state and batch_gen is not None and batch_gen is not gen:
        batch_gen.set_state(state["batch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def _is_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


# ----------------------------------------------------------------------------------------------------------------------


def limit_batches(setting: Any, total: int) -> int:
    """trainer.limit_*_batches, as in Lightning: None = all `total` batches, an int = that many (at most total),
    a float in (0, 1] = that fraction of them (at least one)."""
    if setting is None:
        return total
    if isinstance(setting, float):
        return max(1, min(total, math.ceil(setting * total)))
    return max(1, min(total, int(setting)))


def fit(model: nn.Module, splits, optim: Any, sched: Any, reg: Any, early_stop: Any, trainer: Any, *,
        out_dir: Optional[Path] = None, on_epoch: Optional[Callable[[dict, int], None]] = None,
        meta: Optional[dict] = None, resume: Optional[dict] = None, loader: str = "auto",
        num_workers: int = 0, probe_every: int = 1) -> History:
    """Train `model` on splits.train, validate on splits.val each epoch, stop early; returns the History.

    The model ends on the best epoch's weights when early_stop.restore_best (and early stopping is on).
    `resume` is a checkpoint dict from a previous run's last.pt (with "best_model" from its best.pt).
    `probe_every` (report.probe_every): training-health probes on the last batch of every n-th epoch; 0 = none.
    """
    wall_start = time.perf_counter()
    rt = devices.resolve(trainer.device, trainer.precision, conv_model=_is_conv(model))
    devices.setup_distributed(rt)
    device, task = rt.device, splits.task
    out_dir = out_dir if rt.is_main else None
    memory_format = torch.channels_last if rt.channels_last else torch.contiguous_format

    # -- data: on the device when it fits (batches are slices of a randperm, no DataLoader), else streamed from
    # host memory through a DataLoader (pinned memory, workers, non-blocking copies); both shuffle alike
    model.to(device, memory_format=memory_format)
    streamed = choose_loader(loader, splits, device) == "dataloader"
    data_device = torch.device("cpu") if streamed else device
    x_train = _to(splits.train.x, data_device, memory_format)
    y_train = splits.train.y.to(data_device)
    x_val, y_val = _to(splits.val.x, data_device, memory_format), splits.val.y.to(data_device)
    n_train, n_val, batch_size = len(y_train), len(y_val), trainer.batch_size
    val_limit = limit_batches(getattr(trainer, "limit_val_batches", None), math.ceil(n_val / batch_size))
    if val_limit * batch_size < n_val:  # a quick check (debug): a fixed random subset, the same every epoch
        keep = torch.randperm(n_val, generator=torch.Generator().manual_seed(trainer.seed))[:val_limit * batch_size]
        x_val, y_val = x_val[keep.to(data_device)], y_val[keep.to(data_device)]
        n_val = len(y_val)
    target_scale = float(getattr(splits, "target_scale", 1.0))
    # a last batch of one sample would break BatchNorm in train mode: drop it (it is re-shuffled next epoch)
    batch_starts = list(range(0, n_train - 1 if n_train % batch_size == 1 else n_train, batch_size))
    batch_starts = batch_starts[:limit_batches(getattr(trainer, "limit_train_batches", None), len(batch_starts))]
    if rt.world_size > 1:  # every process takes every world_size-th batch of the same shuffle, the same count each
        per_rank = len(batch_starts) // rt.world_size
        if per_rank == 0:
            raise DlrunError(f"{n_train} training samples make fewer batches of trainer.batch_size={batch_size} "
                             f"than the {rt.world_size} processes: lower trainer.batch_size")
        batch_starts = batch_starts[rt.rank::rt.world_size][:per_rank]
    batch_sizes = torch.tensor([min(batch_size, n_train - s) for s in batch_starts], device=device,
                               dtype=torch.float32)
    eval_batch = max(4 * batch_size, 512)

    # -- optimisation
    criterion = loss_fn(task)
    optimizer = make_optimizer(model, optim, reg.weight_decay)
    scheduler = make_scheduler(optimizer, sched, trainer.max_epochs)
    l1_params = _decay_split(model)[0] if reg.l1 > 0 else []
    stopper = EarlyStopping.from_config(early_stop)
    probe = health.Probe(model, probe_every, activations=not trainer.compile) if probe_every else None
    grad_clip = getattr(trainer, "grad_clip", None)
    trained = [p for p in model.parameters() if p.requires_grad] if grad_clip else []
    gen = torch.Generator(device=data_device)
    gen.manual_seed(trainer.seed)
    batch_gen = devices.batch_generator(gen, data_device, device, trainer.seed)  # augmentation and mixup draws
    scaler = devices.grad_scaler(rt)  # fp16 only
    augment = _augmenter(reg, splits.in_shape)
    mixup_alpha = reg.augment.mixup if task == "classification" else 0.0
    forward = model
    if rt.world_size > 1:
        from torch.nn.parallel import DistributedDataParallel

        # DDP broadcasts rank 0's initial weights; dropout then draws different masks on each process
        forward = DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
        torch.manual_seed(trainer.seed + rt.rank)
    forward = torch.compile(forward) if trainer.compile else forward

    rows: list[dict[str, float]] = []
    best_state: Optional[dict[str, torch.Tensor]] = None
    partial: Optional[dict] = None  # an epoch interrupted mid-way: its shuffle, next batch and running sums
    resumed_from = 0  # epochs finished before this session
    if resume is not None:
        model.load_state_dict(resume["model"])
        optimizer.load_state_dict(resume["optimizer"])
        if scheduler is not None and resume.get("scheduler") is not None:
            scheduler.load_state_dict(resume["scheduler"])
        stopper.load_state_dict(resume["early_stop"])
        _set_rng_state(gen, resume["rng"], batch_gen)
        if scaler is not None and resume.get("scaler") is not None:
            scaler.load_state_dict(resume["scaler"])
        rows = [dict(r) for r in resume["history"]]
        resumed_from = len(rows)
        best_state = resume.get("best_model")
        partial = resume.get("partial")
        if probe is not None:
            probe.load_state_dict(resume.get("probe"), device)
        if partial is not None:
            log.info("resumed in epoch %d at batch %d of %d (best epoch %d)", len(rows) + 1, partial["next_batch"] + 1,
                     len(batch_starts), stopper.best_epoch)
        else:
            log.info("resumed at epoch %d (best epoch %d)", len(rows), stopper.best_epoch)

    writer = _RunWriter(out_dir, trainer.tensorboard)
    meta = dict(meta or {})

    def last_checkpoint(partial_epoch: Optional[dict] = None, running: bool = False) -> dict:
        """`epoch` counts finished epochs; `partial` (or None) is the epoch in progress when a signal came;
        `stop_reason` is None in the checkpoints written while the run goes on (killed there, it did not end)."""
        return {"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "early_stop": stopper.state_dict(), "rng": _rng_state(gen, batch_gen), "epoch": len(rows),
                "history": rows, "meta": meta, "stop_reason": None if running else stop_reason,
                "partial": partial_epoch,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "probe": probe.state_dict() if probe is not None else None,
                "wall_seconds": time.perf_counter() - wall_start}

    def best_checkpoint() -> Optional[dict]:
        if best_state is None:
            return None
        return {"model": best_state, "epoch": stopper.best_epoch, "meta": meta}

    stop_reason = "max_epochs"
    notes: list[str] = []
    first_epoch = len(rows) + 1
    if resume is not None and partial is None and resume.get("stop_reason") in ("patience", "baseline") \
            and stopper.enabled and stopper.wait >= stopper.patience:
        # the run had already stopped: one more epoch would only stop again, so say what to change instead
        stop_reason, first_epoch = resume["stop_reason"], trainer.max_epochs + 1
        notes.append(f"the resumed run had already stopped on {stop_reason} ({stopper.wait} epochs without "
                     f"improvement, early_stop.patience={stopper.patience}): nothing was trained; to continue, "
                     f"resume with early_stop.patience={stopper.patience + max(stopper.patience, 5)} or "
                     "early_stop.enabled=false")
        log.warning(notes[-1])
    last_write = time.monotonic()
    interrupted: Optional[int] = None
    saved_partial: Optional[dict] = None  # the epoch in progress when a signal stopped the run
    with catch_signals() as flag:
        for epoch in range(first_epoch, trainer.max_epochs + 1):
            if flag.signal is not None and rt.world_size == 1:  # a signal between epochs: nothing of the next has run
                interrupted = flag.signal
                break
            t0 = time.perf_counter()
            # -- train: one pass, its figures are the epoch's train figures (dropout on: see evaluate())
            model.train()
            lr = optimizer.param_groups[0]["lr"]
            losses, outs, targets, errors = [], [], [], []
            if partial is not None:  # continue the interrupted epoch: same shuffle, next batch, running sums
                perm, first = partial["perm"].to(data_device), partial["next_batch"]
                losses = list(partial["losses"].to(device).unbind())
                errors = [partial["error_sum"].to(device)]
                partial = None
            else:
                perm, first = torch.randperm(n_train, device=data_device, generator=gen), 0
            todo = batch_starts[first:]
            batches = _streamed(x_train, y_train, perm, todo, batch_size, num_workers, device) if streamed \
                else ((x_train[perm[s:s + batch_size]], y_train[perm[s:s + batch_size]]) for s in todo)
            done = first
            probing = probe is not None and probe.due(epoch)
            for x, y in batches:
                probe_now = probing and done == len(batch_starts) - 1  # the epoch's last batch
                if probe_now:
                    probe.attach()
                if augment is not None:
                    x = augment(x, batch_gen)
                if mixup_alpha > 0:
                    from dlrun.data.augment import mixup

                    x, y, y_mix, lam = mixup(x, y, mixup_alpha, batch_gen)
                with rt.autocast():
                    out = forward(x)
                    loss = criterion(out, y)
                    if mixup_alpha > 0:
                        loss = lam * loss + (1 - lam) * criterion(out, y_mix)
                objective = loss
                if l1_params:
                    objective = loss + reg.l1 * sum(p.abs().sum() for p in l1_params)
                optimizer.zero_grad(set_to_none=True)
                # fp16: scale the loss so small gradients do not underflow; the scaler skips steps with inf/NaN
                (objective if scaler is None else scaler.scale(objective)).backward()
                if probe_now:  # gradients as the step will see them, before clipping
                    probe.after_backward(scaler.get_scale() if scaler is not None else 1.0)
                if grad_clip:
                    if scaler is not None:
                        scaler.unscale_(optimizer)
                    torch.nn.utils.clip_grad_norm_(trained, grad_clip)
                if scaler is None:
                    optimizer.step()
                else:
                    scaler.step(optimizer)
                    scaler.update()
                losses.append(loss.detach())
                if streamed:  # an epoch of outputs may not fit in memory: reduce per batch
                    errors.append(error_sum(task, out.detach(), y))
                else:  # the error is computed once per epoch, not with ~5 tiny ops per batch
                    outs.append(out.detach())
                    targets.append(y)
                done += 1
                if flag.signal is not None and rt.world_size == 1:  # under DDP the processes stop together, below
                    break
            if done < len(batch_starts):  # a signal mid-epoch: save where the epoch stands, resume from the next batch
                if outs:
                    errors.append(error_sum(task, torch.cat(outs), torch.cat(targets)))
                saved_partial = {"perm": perm.cpu(), "next_batch": done,
                                 "losses": torch.stack(losses).cpu() if losses else torch.zeros(0),
                                 "error_sum": torch.stack([e.float() for e in errors]).sum().cpu() if errors
                                 else torch.zeros(())}
                interrupted = flag.signal
                break
            seen = batch_sizes.sum()
            loss_sum = (torch.stack(losses).float() * batch_sizes).sum()
            # the running sum of an interrupted epoch comes first, then this pass's outputs: the same total
            train_err = torch.stack([e.float() for e in errors]).sum() if errors else torch.zeros((), device=device)
            if outs:
                train_err = train_err + error_sum(task, torch.cat(outs), torch.cat(targets)).float()

            # -- validate
            if rt.world_size > 1:
                # every process takes rank 0's BatchNorm statistics (DDP syncs buffers only at the start of a
                # forward), validates its share of the validation split, and the sums are added with the epoch's
                # training figures: one set of figures everywhere, so one early-stopping and scheduler decision
                for buffer in model.buffers():
                    torch.distributed.broadcast(buffer, src=0)
                shard = slice(rt.rank, None, rt.world_size)
                val_loss, val_err = _evaluate_sums(model, x_val[shard], y_val[shard], task, criterion, rt, eval_batch)
                totals = torch.stack([loss_sum, train_err, seen, val_loss.float(), val_err.float()])
                torch.distributed.all_reduce(totals)
                loss_sum, train_err, seen, val_loss, val_err = totals.unbind()
            else:
                val_loss, val_err = _evaluate_sums(forward, x_val, y_val, task, criterion, rt, eval_batch)
            train_loss = loss_sum / seen
            # one host sync per epoch
            tl, te, vl, ve, n_seen = torch.stack([train_loss, train_err, val_loss, val_err, seen]).tolist()
            row = {"epoch": epoch, "train_loss": tl, "train_error": finish_error(task, te, int(n_seen), target_scale),
                   "val_loss": vl / n_val, "val_error": finish_error(task, ve, n_val, target_scale), "lr": lr,
                   "epoch_seconds": time.perf_counter() - t0}
            rows.append(row)
            if probing:
                probe.collect(epoch)

            # -- schedule, early stopping, best weights in memory
            if scheduler is not None:
                scheduler.step(row["val_loss"]) if sched.name == "plateau" else scheduler.step()
            stop = stopper.step(epoch, row[early_stop.monitor])
            if stopper.best_epoch == epoch:
                best_state = _copy_state(model)
            if on_epoch is not None:
                on_epoch(row, trainer.max_epochs)
            if not math.isfinite(tl):
                stop, stopper.stop_reason = True, "diverged"
            stop = stop and (stopper.enabled or stopper.stop_reason == "diverged")
            if rt.world_size > 1:  # the processes agree to stop, on a decision or on a signal any of them received
                agreed = torch.tensor([float(stop), float(flag.signal or 0)], device=device)
                torch.distributed.all_reduce(agreed, op=torch.distributed.ReduceOp.MAX)
                stop, any_signal = bool(agreed[0]), int(agreed[1])
                if any_signal and not stop and epoch < trainer.max_epochs:
                    interrupted = any_signal
                    break
            if stop:
                stop_reason = stopper.stop_reason or "patience"
                break
            if time.monotonic() - last_write >= trainer.checkpoint_every:
                writer.write(rows, last_checkpoint(running=True), best_checkpoint(),
                             probe.rows if probe is not None else None)
                last_write = time.monotonic()
        if interrupted is not None:
            stop_reason = "interrupted"

        # -- the end: last.pt holds the last weights; then the best weights go back into the model
        writer.write(rows, last_checkpoint(saved_partial), best_checkpoint(),
                     probe.rows if probe is not None else None)
        writer.close()
        # a signal after the last batch of the last epoch, or after a stop decision, leaves a finished run finished:
        # it is held (pipeline.run writes the whole report, then dlrun exits 128 + N saying the run had finished)
        held = flag.signal if interrupted is None else None
        if held is not None:
            log.warning("%s came when training had ended: writing the whole report, then exiting",
                        signal.Signals(held).name)
    # restore_best holds with or without early stopping (a run that never improved on epoch 1 ends on epoch 1)
    restore = early_stop.restore_best and best_state is not None
    if restore:
        model.load_state_dict(best_state)
    # the epoch whose weights the model holds; 0 when no epoch ended with a finite monitor (a run that diverged at once)
    final_epoch = stopper.best_epoch if restore else (len(rows) if stopper.best_epoch else 0)
    return History(rows=rows, best_epoch=final_epoch, stop_reason=stop_reason,
                   wall_seconds=time.perf_counter() - wall_start, device=str(device), precision=rt.precision,
                   signal=interrupted, held=held, notes=notes, rank=rt.rank, world_size=rt.world_size,
                   dynamics=list(probe.rows) if probe is not None else [],
                   resumed_from=resumed_from)


def choose_loader(loader: str, splits, device: torch.device, gpu_share: float = 0.25) -> str:
    """memory | dataloader. auto keeps data on the device unless it would take more than `gpu_share` of the GPU;
    on the CPU the in-memory path is always at least as fast (the tensors are already there)."""
    if loader != "auto":
        return loader
    if device.type != "cuda":
        return "memory"
    size = sum(s.x.element_size() * s.x.nelement() for s in (splits.train, splits.val))
    total = torch.cuda.get_device_properties(device).total_memory
    return "memory" if size <= gpu_share * total else "dataloader"


def _to(x: torch.Tensor, device: torch.device, memory_format) -> torch.Tensor:
    return x.to(device, memory_format=memory_format) if x.ndim == 4 else x.to(device)


class _BatchView(torch.utils.data.Dataset):
    """Indexed by a whole batch of indices, so the DataLoader fetches a batch with one gather, not per sample."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor):
        self.x, self.y = x, y

    def __len__(self) -> int:
        return len(self.y)

    def __getitem__(self, idx: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.x[idx], self.y[idx]


def _streamed(x, y, perm, batch_starts, batch_size, num_workers, device):
    """Batches of the same shuffle as the in-memory path, loaded by a DataLoader and copied to the device."""
    pin = device.type == "cuda"
    batch_index = [perm[s:s + batch_size] for s in batch_starts]
    # the loader draws its workers' base seed from this generator, not from the global RNG that dropout uses
    seeds = torch.Generator().manual_seed(int(perm[0]))
    data = torch.utils.data.DataLoader(_BatchView(x, y), sampler=batch_index, batch_size=None,
                                       num_workers=num_workers, pin_memory=pin, generator=seeds)
    for xb, yb in data:
        yield xb.to(device, non_blocking=pin), yb.to(device, non_blocking=pin)


def _augmenter(reg: Any, in_shape: tuple[int, ...]):
    aug = getattr(reg, "augment", None)
    if aug is None or not any(getattr(aug, k) for k in ("noise", "rotation", "hflip", "vflip", "blur", "translate")):
        return None  # the hot loop pays nothing when augmentation is off
    from dlrun.data.augment import build_augment

    return build_augment(aug, tuple(in_shape))


def _evaluate_sums(forward, x, y, task, criterion, rt, batch) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed loss and summed error over (x, y) in eval mode, as 0-d tensors (no host sync).

    x and y may sit in host memory (the streamed path): each chunk is copied to the device."""
    was_training = forward.training
    forward.eval()
    device = rt.device
    loss_sum = torch.zeros((), device=device)
    err_sum = torch.zeros((), device=device)
    with torch.inference_mode(), rt.autocast():
        for start in range(0, len(y), batch):
            out = forward(x[start:start + batch].to(device, non_blocking=True))
            yb = y[start:start + batch].to(device, non_blocking=True)
            loss_sum += criterion(out, yb, reduction="sum").float()
            err_sum += error_sum(task, out, yb).float()
    forward.train(was_training)
    return loss_sum, err_sum


# ----------------------------------------------------------------------------------------------------------------------
# evaluate(): every split, in eval mode, with the weights the model holds now


@dataclass
class SplitEvaluation:
    loss: float  # mean per-sample loss
    error: float  # error rate (classification) or RMSE in target units (regression)
    n: int
    y_true: np.ndarray  # (n,)
    y_pred: np.ndarray  # (n,) predicted class or value
    sample_loss: np.ndarray  # (n,) per-sample loss
    probs: Optional[np.ndarray] = None  # (n, K) softmax outputs, classification only
    features: Optional[np.ndarray] = None  # (m, D) penultimate features of a seeded random subset of max_features

    @property
    def errors(self) -> int:
        """Misclassified count (classification)."""
        return int(round(self.error * self.n))


@dataclass
class Evaluation:
    task: str
    splits: dict[str, SplitEvaluation] = field(default_factory=dict)


def evaluate(model: nn.Module, splits, trainer: Any, max_features: int = 2000) -> Evaluation:
    """Evaluate every split (train, train_dev, val, test) in eval mode: dropout off, BatchNorm in inference.

    Train figures measured in train mode (with dropout) look worse than validation; the report must not be
    fooled by that, so it reads these figures, not the per-epoch ones.
    """
    rt = devices.resolve(trainer.device, trainer.precision, conv_model=_is_conv(model))
    device, task = rt.device, splits.task
    criterion = loss_fn(task)
    target_scale = float(getattr(splits, "target_scale", 1.0))
    batch = max(4 * trainer.batch_size, 512)
    model.to(device).eval()
    result = Evaluation(task=task)
    for name, split in splits.items():
        outs, feats = [], []
        # features of a seeded random subset, not the first rows: a class-sorted source (image folders, sorted
        # tables) would otherwise compare different class mixtures between splits and fake a shift
        chosen = np.sort(np.random.default_rng(0).choice(len(split), min(len(split), max_features), replace=False))
        with torch.inference_mode(), rt.autocast():
            for start in range(0, len(split), batch):
                x = split.x[start:start + batch].to(device)
                f = model.features(x) if hasattr(model, "features") and hasattr(model, "head") else None
                out = model.head(f) if f is not None else model(x)
                outs.append(out.float())
                rows = chosen[(chosen >= start) & (chosen < start + batch)] - start
                if f is not None and len(rows):
                    feats.append(f.float().flatten(1)[torch.as_tensor(rows, device=f.device)])
        out = torch.cat(outs) if outs else torch.zeros(0, splits.num_outputs, device=device)
        y = split.y.to(device)
        sample_loss = criterion(out, y, reduction="none").reshape(-1)
        total_error = float(error_sum(task, out, y))
        if task == "classification":
            probs = torch.softmax(out, dim=1).cpu().numpy()
            y_true, y_pred = split.y.numpy(), out.argmax(dim=1).cpu().numpy()
        else:  # back to the target's own units
            probs = None
            shift = float(getattr(splits, "target_mean", 0.0))
            y_true = split.y.numpy() * target_scale + shift
            y_pred = out.squeeze(-1).cpu().numpy() * target_scale + shift
        result.splits[name] = SplitEvaluation(
            loss=float(sample_loss.mean()) if len(y) else float("nan"),
            error=finish_error(task, total_error, len(y), target_scale), n=len(y),
            y_true=y_true, y_pred=y_pred, sample_loss=sample_loss.cpu().numpy(),
            probs=probs, features=torch.cat(feats).cpu().numpy() if feats else None)
    return result

"""Engine overhead: dlrun's fit() against a minimal hand-written PyTorch loop and PyTorch Lightning's Trainer.

    .venv/bin/python benchmarks/bench_engine.py            # full run: ~6 minutes on 2 cores
    .venv/bin/python benchmarks/bench_engine.py --quick    # smoke check: ~1 minute, fewer repeats and epochs

One process, one sitting, the same model, data, seed and hyper-parameters for every contender. The machine this
runs on is usually shared, so contenders are interleaved (A B C, C B A, ...), every figure is a median over
repeats with its min-max spread, and ratios are medians of per-repeat paired ratios (A_r / B_r from the same
repeat, so a slow minute slows both). Sections:

1. median epoch time (train pass + validation), first epoch excluded: hand loop, dlrun's fit, Lightning
2. where dlrun's extra epoch time goes: the hand loop plus each piece of work fit() adds per batch
3. whole per-epoch cost as the user pays it: (wall(long run) - wall(short run)) / (long - short), so early
   stopping, metric rows, checkpoint checks and the progress callback are all included
4. the `dlrun` command: `dlrun --help`, whether `import dlrun.cli` imports torch, a 20-epoch run, the report
   steps (evaluate, diagnose, render with plots) in a fresh process, and the default run end to end
5. scaling: epoch time against dataset size (synthetic, 1k-100k samples) and MLP width (64-1024), plus a PNG

Results go to --out (JSON) and a PNG next to it; benchmarks/RESULTS.md records a full run.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import logging
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run from a checkout without installing

from dlrun import config as c  # noqa: E402
from dlrun import data, models  # noqa: E402
from dlrun.console import TerminalUI  # noqa: E402
from dlrun.engine import fit  # noqa: E402
from dlrun.models.registry import Net  # noqa: E402

# ----------------------------------------------------------------------------------------------------------------------
# settings: the issue's, shared by every contender

SETTINGS = {
    "batch_size": 64,  # dlrun's default, and the issue's
    "lr": 1e-3,  # Adam, dlrun's default
    "eval_batch": 512,  # validation batch: dlrun's max(4 * batch_size, 512), used by all three
    "threads": 2,  # torch.set_num_threads: CI has 2 cores
    "seed": 0,  # model init (torch.manual_seed before building) and the shuffle generator
    "patience": 10_000,  # early stopping on, but never fires: every run does its full epoch count
}
FULL = {
    "epochs": 20,  # per epoch-time run; the first epoch (allocator warm-up, lazy init) is excluded
    "repeats": 9,  # epoch-time runs per contender (5 left the CNN ratio within +-6% between two full runs)
    "short": 10, "long": 40, "cost_repeats": 15,  # whole per-epoch cost: epochs of the short and long runs
    "help_repeats": 5, "cli_repeats": 3,  # subprocess runs of `dlrun --help` and of whole `dlrun` runs
    "sizes": [1_000, 10_000, 100_000], "widths": [64, 256, 1024],
    "scaling_epochs": 5, "scaling_repeats": 3,
}
QUICK = {
    "epochs": 6, "repeats": 2, "short": 3, "long": 9, "cost_repeats": 2, "help_repeats": 2, "cli_repeats": 1,
    "sizes": [1_000, 10_000, 100_000], "widths": [64, 256, 1024], "scaling_epochs": 3, "scaling_repeats": 1,
}
TARGETS = {
    "epoch_ratio": 1.05,  # dlrun median epoch / hand loop, both cases, CPU
    "cost_ratio": 1.05,  # dlrun whole per-epoch cost / hand loop, both cases, CPU
    "help_seconds": 1.0,
    "report_seconds": 3.0,  # evaluate + diagnose + render (plots on) of the default run
    "default_run_seconds": 30.0,  # `dlrun trainer.threads=2`, end to end
    "scaling_slope": (0.9, 1.1),  # log-log slope of epoch time against samples, 10k -> 100k: linear is 1
}

DEVICE = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # what trainer.device=auto picks
DLRUN_BIN = Path(sys.executable).with_name("dlrun")


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
# contender 1: the minimal hand-written loop (the baseline every ratio divides by)


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
# contender 2: dlrun's engine, as the pipeline calls it (run folder, default checkpoint_every, TensorBoard on)


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
# contender 3: PyTorch Lightning's Trainer with a DataLoader, in its fastest configuration (barebones=True:
# no logging, checkpointing, progress bar, model summary or sanity check)


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

        def __init__(self):
            self.seconds, self.val_loss, self.t0 = [], math.nan, 0.0

        def on_train_epoch_start(self, trainer, module):
            self.t0 = time.perf_counter()

        def on_validation_epoch_end(self, trainer, module):  # callbacks run before the module's own hook
            self.val_loss = module.val_sum.item() / len(splits.val)
            self.seconds.append(time.perf_counter() - self.t0)

    pin = DEVICE.type == "cuda"
    train = DataLoader(TensorDataset(splits.train.x, splits.train.y), batch_size=SETTINGS["batch_size"], shuffle=True,
                       generator=torch.Generator().manual_seed(SETTINGS["seed"]), pin_memory=pin)
    val = DataLoader(TensorDataset(splits.val.x, splits.val.y), batch_size=SETTINGS["eval_batch"], pin_memory=pin)
    timer = EpochTimer()
    trainer = L.Trainer(accelerator="auto", devices=1, max_epochs=epochs, barebones=True, callbacks=[timer])
    trainer.fit(Module(model), train, val)
    return timer.seconds, timer.val_loss


# ----------------------------------------------------------------------------------------------------------------------
# statistics: medians and spreads over repeats


def spread(values: list[float]) -> dict:
    v = sorted(values)
    return {"median": statistics.median(v), "mean": statistics.fmean(v),
            "std": statistics.stdev(v) if len(v) > 1 else 0.0, "min": v[0], "max": v[-1], "n": len(v),
            "values": values}


def paired_ratio(a: list[float], b: list[float]) -> dict:
    """a_r / b_r for each repeat r, summarised."""
    return spread([x / y for x, y in zip(a, b)])


def median_after_first(epoch_seconds: list[float]) -> float:
    return statistics.median(epoch_seconds[1:])


def interleaved(names: list[str], repeats: int):
    """(repeat, name) in the order A B C, C B A, A B C, ...: drift on a shared machine hits all alike."""
    for r in range(repeats):
        for name in (names if r % 2 == 0 else names[::-1]):
            yield r, name


def ms(s: dict, digits: int = 2) -> str:
    return f"{s['median'] * 1e3:.{digits}f} ms [{s['min'] * 1e3:.{digits}f}-{s['max'] * 1e3:.{digits}f}]"


def ratio(s: dict) -> str:
    return f"{s['median']:.3f}x [{s['min']:.3f}-{s['max']:.3f}]"


def seconds(s: dict) -> str:
    return f"{s['median']:.2f} s [{s['min']:.2f}-{s['max']:.2f}]"


class QuietGate:
    """`with GATE:` around each timed run: first wait (within a budget) until other processes use fewer than
    `threshold` cores, then measure how many cores they used during the run.

    Two torch threads on two cores shared with one busy process do not run 2x slower but up to 40x (OpenMP
    threads wait at every barrier for the one that was descheduled: seen in a first --quick run while another
    engineer's test suite ran), so a run started then measures the neighbour, not dlrun. What the gate cannot
    see (other virtual machines on the same host) shows only as spread, which the medians absorb.
    """

    def __init__(self, threshold: float = 0.5, patience: float = 20.0, budget: float = 150.0):
        self.threshold, self.patience, self.budget = threshold, patience, budget
        self.waited = 0.0  # seconds spent waiting for quiet, all runs
        self.at_start, self.during = [], []  # other processes' cores at each start and on average during each run
        self._start = None
        self.enabled = Path("/proc/stat").exists()  # Linux only; elsewhere the gate does nothing

    @staticmethod
    def _snapshot() -> tuple[int, int, float, float]:
        """(busy ticks, all ticks) of the machine, CPU seconds of this process and its waited children, wall."""
        fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
        t = os.times()
        return sum(fields) - fields[3] - fields[4], sum(fields), t.user + t.system + t.children_user \
            + t.children_system, time.perf_counter()  # idle and iowait are not busy

    def _others(self, a, b) -> float:
        """Cores used by other processes between two snapshots."""
        if b[1] == a[1] or b[3] == a[3]:
            return 0.0
        machine = (b[0] - a[0]) / (b[1] - a[1]) * (os.cpu_count() or 1)
        return max(0.0, machine - (b[2] - a[2]) / (b[3] - a[3]))

    def _sample(self, window: float = 0.1) -> float:
        a = self._snapshot()
        time.sleep(window)
        return self._others(a, self._snapshot())

    def __enter__(self):
        if not self.enabled:
            return self
        start = time.perf_counter()
        others = self._sample()
        while others >= self.threshold and self.waited + time.perf_counter() - start < self.budget \
                and time.perf_counter() - start < self.patience:
            time.sleep(0.5)
            others = self._sample()
        self.waited += time.perf_counter() - start
        self.at_start.append(others)
        self._start = self._snapshot()
        return self

    def __exit__(self, *exc) -> None:
        if self.enabled and self._start is not None:
            self.during.append(self._others(self._start, self._snapshot()))
            self._start = None

    def summary(self) -> dict:
        t = self.threshold
        return {"threshold_cores": t, "runs": len(self.during), "waited_seconds": round(self.waited, 1),
                "runs_started_busy": sum(x >= t for x in self.at_start),
                "runs_busy_during": sum(x >= t for x in self.during),
                "others_cores_during": spread(self.during) if self.during else None}


GATE = QuietGate()


# ----------------------------------------------------------------------------------------------------------------------
# sections 1-3: epoch time, attribution, whole per-epoch cost


def epoch_time(case: str, splits, p: dict, lightning: bool, scratch: Path) -> dict:
    contenders = ["hand", "dlrun"] + (["lightning"] if lightning else [])
    per_run = {name: [] for name in contenders}
    val_loss = {name: [] for name in contenders}
    for r, name in interleaved(contenders, p["repeats"]):
        model = CASES[case]()
        with GATE:
            if name == "hand":
                secs, loss = hand_fit(model, splits, p["epochs"])
            elif name == "dlrun":
                secs, loss = dlrun_fit(model, splits, p["epochs"], scratch / f"epoch-{case}-{r}")
            else:
                secs, loss = lightning_fit(model, splits, p["epochs"])
        per_run[name].append(median_after_first(secs))
        val_loss[name].append(loss)
    result = {name: spread(per_run[name]) for name in contenders}
    result["ratio"] = {name: paired_ratio(per_run[name], per_run["hand"]) for name in contenders if name != "hand"}
    # the extra time itself: per-batch dispatch work costs the same milliseconds whether matmuls run fast or slow,
    # so on a machine whose speed drifts the difference is steadier than the ratio
    result["extra"] = {name: spread([a - b for a, b in zip(per_run[name], per_run["hand"])])
                       for name in contenders if name != "hand"}
    result["final_val_loss"] = {name: statistics.median(v) for name, v in val_loss.items()}
    return result


def attribution(case: str, splits, p: dict) -> dict:
    """The hand loop with each piece of per-batch work dlrun's fit() adds, and with fused Adam."""
    variants = {"hand": {}, "+train_metrics": {"train_metrics": True},
                "+param_groups (fit: only if weight_decay > 0)": {"param_groups": True},
                "+both": {"train_metrics": True, "param_groups": True}, "fused_adam": {"fused": True}}
    per_run = {name: [] for name in variants}
    for _, name in interleaved(list(variants), p["repeats"]):
        model = CASES[case]()
        with GATE:
            secs, _ = hand_fit(model, splits, p["epochs"], **variants[name])
        per_run[name].append(median_after_first(secs))
    result = {name: spread(v) for name, v in per_run.items()}
    result["ratio"] = {name: paired_ratio(per_run[name], per_run["hand"]) for name in variants if name != "hand"}
    return result


def per_epoch_cost(case: str, splits, p: dict, scratch: Path) -> dict:
    """(wall(long) - wall(short)) / (long - short) for the hand loop and dlrun's fit(), paired per repeat.

    Also splits each contender's cost into the timed epoch span and what happens outside it per epoch (for fit:
    early stopping, the best-weights copy, the progress callback, the checkpoint-time check)."""
    short, long_ = p["short"], p["long"]
    runs = [("hand", short), ("dlrun", short), ("hand", long_), ("dlrun", long_)]
    wall: dict[tuple[str, int], list[float]] = {run: [] for run in runs}
    outside: dict[tuple[str, int], list[float]] = {run: [] for run in runs}  # wall - sum(epoch seconds)
    epoch_median: dict[str, list[float]] = {"hand": [], "dlrun": []}  # of the long runs, first epoch excluded
    hand_fit(CASES[case](), splits, 2)  # warm-up, not recorded
    dlrun_fit(CASES[case](), splits, 2, scratch / f"cost-{case}-warmup")
    for r in range(p["cost_repeats"]):
        for name, epochs in (runs if r % 2 == 0 else runs[::-1]):
            model = CASES[case]()
            out_dir = scratch / f"cost-{case}-{name}-{epochs}-{r}"
            with GATE:
                t0 = time.perf_counter()
                if name == "hand":
                    secs, _ = hand_fit(model, splits, epochs)
                else:
                    secs, _ = dlrun_fit(model, splits, epochs, out_dir)
                wall[(name, epochs)].append(time.perf_counter() - t0)
            outside[(name, epochs)].append(wall[(name, epochs)][-1] - sum(secs))
            if epochs == long_:
                epoch_median[name].append(median_after_first(secs))
    result = {}
    for name in ("hand", "dlrun"):
        cost = [(lw - sw) / (long_ - short) for lw, sw in zip(wall[(name, long_)], wall[(name, short)])]
        fixed = [sw - short * k for sw, k in zip(wall[(name, short)], cost)]
        beside = [(lo - so) / (long_ - short) for lo, so in zip(outside[(name, long_)], outside[(name, short)])]
        # cross-check, less sensitive to a slow second on a shared machine: median epoch + what lies outside it
        robust = [m + b for m, b in zip(epoch_median[name], beside)]
        result[name] = {"per_epoch": spread(cost), "fixed": spread(fixed), "outside_epoch_span": spread(beside),
                        "robust_per_epoch": spread(robust),
                        "wall_short": spread(wall[(name, short)]), "wall_long": spread(wall[(name, long_)])}
    result["ratio"] = paired_ratio(result["dlrun"]["per_epoch"]["values"], result["hand"]["per_epoch"]["values"])
    result["robust_ratio"] = paired_ratio(result["dlrun"]["robust_per_epoch"]["values"],
                                          result["hand"]["robust_per_epoch"]["values"])
    return result


# ----------------------------------------------------------------------------------------------------------------------
# section 4: the dlrun command, in subprocesses (start-up, imports and the report are part of what users wait for)


def dlrun_command() -> list[str]:
    return [str(DLRUN_BIN)] if DLRUN_BIN.exists() else [sys.executable, "-m", "dlrun"]


def timed_run(args: list[str], cwd: Path) -> tuple[float, subprocess.CompletedProcess]:
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    with GATE:
        t0 = time.perf_counter()
        proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
        wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(args)} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return wall, proc


def cli_section(p: dict, scratch: Path) -> dict:
    result = {}
    # dlrun --help, and what `import dlrun.cli` pulls in
    result["help"] = spread([timed_run(dlrun_command() + ["--help"], scratch)[0] for _ in range(p["help_repeats"])])
    heavy = ("torch", "torchvision", "scipy", "sklearn", "matplotlib", "pandas")
    probe = f"import json, sys, dlrun.cli; print(json.dumps([m for m in {heavy!r} if m in sys.modules]))"
    result["heavy_modules_after_import_cli"] = json.loads(timed_run([sys.executable, "-c", probe], ROOT)[1].stdout)

    # a 20-epoch run of the MLP, no plots: start-up + report = wall - fit's own wall
    runs = []
    for r in range(p["cli_repeats"]):
        run_dir = scratch / f"cli-20-{r}"
        args = dlrun_command() + [f"trainer.max_epochs={FULL['epochs']}", "model.hidden=[256,256]",
                                  f"trainer.threads={SETTINGS['threads']}", f"hydra.run.dir={run_dir}",
                                  "report.plots=false", "trainer.progress=false"]
        wall, _ = timed_run(args, scratch)
        report = json.loads((run_dir / "report.json").read_text())
        runs.append({"wall": wall, "fit": report["run"]["wall_seconds"], "epochs": report["run"]["epochs_run"]})
    result["run_20_epochs"] = {"wall": spread([x["wall"] for x in runs]), "fit": spread([x["fit"] for x in runs]),
                               "outside_fit": spread([x["wall"] - x["fit"] for x in runs]),
                               "epochs": [x["epochs"] for x in runs]}

    # the report steps of the default run, in a fresh process each (cold imports are what a user pays)
    steps = []
    for r in range(p["cli_repeats"]):
        _, proc = timed_run([sys.executable, __file__, "--child-report", str(scratch / f"report-{r}")], ROOT)
        steps.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    result["report"] = {key: spread([s[key] for s in steps]) for key in steps[0] if key != "epochs"}
    result["report"]["epochs"] = [s["epochs"] for s in steps]

    # the default run, end to end
    runs = []
    for r in range(p["cli_repeats"]):
        run_dir = scratch / f"cli-default-{r}"
        wall, _ = timed_run(dlrun_command() + [f"trainer.threads={SETTINGS['threads']}", f"hydra.run.dir={run_dir}"],
                            scratch)
        report = json.loads((run_dir / "report.json").read_text())
        runs.append({"wall": wall, "fit": report["run"]["wall_seconds"], "epochs": report["run"]["epochs_run"]})
    result["default_run"] = {"wall": spread([x["wall"] for x in runs]), "fit": spread([x["fit"] for x in runs]),
                             "epochs": [x["epochs"] for x in runs]}
    return result


def child_report(run_dir: Path) -> None:
    """In a fresh process: dlrun.pipeline.run on the default config with plots on, each report step timed."""
    import dlrun.engine
    import dlrun.report
    from dlrun.pipeline import run

    timings: dict[str, float] = {}

    def timed(module, name: str, key: str):
        inner = getattr(module, name)

        def wrapper(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return inner(*args, **kwargs)
            finally:
                timings[key] = timings.get(key, 0.0) + time.perf_counter() - t0

        setattr(module, name, wrapper)  # run() imports these names at call time, so it calls the wrappers

    timed(dlrun.engine, "evaluate", "evaluate")
    timed(dlrun.report, "baselines_for", "baselines")
    timed(dlrun.report, "diagnose", "diagnose")
    timed(dlrun.report, "render", "render")
    cfg = c.Config(model=c.MLPConfig(), dataset=c.DigitsConfig(), split=c.SplitConfig(), reg=c.RegConfig(),
                   early_stop=c.EarlyStopConfig(), optim=c.OptimConfig(), sched=c.SchedConfig(),
                   trainer=c.TrainerConfig(progress="false", threads=SETTINGS["threads"]),
                   report=c.ReportConfig(plots=True), shift=c.ShiftConfig())
    t0 = time.perf_counter()
    result = run(cfg, run_dir, overrides=[])
    total = time.perf_counter() - t0
    fit_wall = result.report["run"]["wall_seconds"]
    report_steps = sum(timings[k] for k in ("evaluate", "baselines", "diagnose", "render"))
    print(json.dumps({"total": total, "fit": fit_wall, "outside_fit": total - fit_wall, "report": report_steps,
                      **timings, "epochs": result.report["run"]["epochs_run"]}))


# ----------------------------------------------------------------------------------------------------------------------
# section 5: scaling with dataset size and width


def scaling(p: dict, scratch: Path) -> dict:
    sizes = []
    for n in p["sizes"]:
        splits = data.load(c.SyntheticConfig(n_samples=n, n_features=64, n_classes=10), c.SplitConfig(),
                           c.ShiftConfig())
        sizes.append({"n_samples": n, "n_train": len(splits.train),
                      **_scaling_point(lambda: build_mlp((64,)), splits, p, scratch / f"size-{n}")})
    digits = data.load(c.DigitsConfig(), c.SplitConfig(), c.ShiftConfig())
    widths = [{"width": w, **_scaling_point(lambda w=w: build_mlp(width=w), digits, p, scratch / f"width-{w}")}
              for w in p["widths"]]
    for row in sizes:
        row["us_per_sample"] = {k: row[k]["median"] / row["n_train"] * 1e6 for k in ("hand", "dlrun")}
    result = {"sizes": sizes, "widths": widths}
    by_n = {row["n_samples"]: row for row in sizes}
    if 10_000 in by_n and 100_000 in by_n:  # the log-log slope: 1 is linear, < 1 means fixed costs still show
        result["slope_10k_100k"] = {k: math.log(by_n[100_000][k]["median"] / by_n[10_000][k]["median"])
                                    / math.log(by_n[100_000]["n_train"] / by_n[10_000]["n_train"])
                                    for k in ("hand", "dlrun")}
    return result


def _scaling_point(build, splits, p: dict, out_dir: Path) -> dict:
    per_run = {"hand": [], "dlrun": []}
    for r, name in interleaved(["hand", "dlrun"], p["scaling_repeats"]):
        model = build()
        with GATE:
            if name == "hand":
                secs, _ = hand_fit(model, splits, p["scaling_epochs"])
            else:
                secs, _ = dlrun_fit(model, splits, p["scaling_epochs"], out_dir / str(r))
        per_run[name].append(median_after_first(secs))
    return {"hand": spread(per_run["hand"]), "dlrun": spread(per_run["dlrun"]),
            "ratio": paired_ratio(per_run["dlrun"], per_run["hand"])}


def plot_scaling(result: dict, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_n, ax_w) = plt.subplots(1, 2, figsize=(10, 4))
    n_train = [row["n_train"] for row in result["sizes"]]
    for key, style in (("hand", "o-"), ("dlrun", "s--")):
        ax_n.plot(n_train, [row[key]["median"] * 1e3 for row in result["sizes"]], style, label=key)
        ax_w.plot([row["width"] for row in result["widths"]], [row[key]["median"] * 1e3 for row in result["widths"]],
                  style, label=key)
    first = result["sizes"][0]
    ax_n.plot(n_train, [first["hand"]["median"] * 1e3 * n / n_train[0] for n in n_train], ":", color="grey",
              label="linear from the smallest")
    ax_n.set(xscale="log", yscale="log", xlabel="training samples", ylabel="median epoch time (ms)",
             title="synthetic, 64 features, MLP 256-256")
    ax_w.set(xscale="log", yscale="log", xlabel="MLP width (both hidden layers)", ylabel="median epoch time (ms)",
             title="digits (1077 training samples)")
    for ax in (ax_n, ax_w):
        ax.legend()
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------------------
# the machine, the targets, the tables


def machine() -> dict:
    cpu = "unknown"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    info = {"date": datetime.date.today().isoformat(), "cpu": cpu, "nproc": os.cpu_count(),
            "python": platform.python_version(), "torch": torch.__version__, "lightning": lightning_available(),
            "device": str(DEVICE), "cuda_available": torch.cuda.is_available(), "threads": torch.get_num_threads()}
    if DEVICE.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(DEVICE)
    with contextlib.suppress(OSError, subprocess.CalledProcessError):  # which dlrun was measured
        git = ["git", "-C", str(ROOT)]
        info["commit"] = subprocess.run(git + ["rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                        check=True).stdout.strip()
        info["dlrun_modified"] = subprocess.run(git + ["status", "--porcelain", "dlrun"], capture_output=True,
                                                text=True, check=True).stdout.split()[1::2]
    return info


def judge(results: dict) -> list[dict]:
    t = TARGETS
    rows = []
    for case in CASES:
        r = results["epoch_time"][case]["ratio"]["dlrun"]["median"]
        rows.append({"target": f"{case}: dlrun median epoch <= {t['epoch_ratio']}x hand", "measured": f"{r:.3f}x",
                     "met": r <= t["epoch_ratio"]})
        r = results["per_epoch_cost"][case]["ratio"]["median"]
        rows.append({"target": f"{case}: dlrun whole per-epoch cost <= {t['cost_ratio']}x hand",
                     "measured": f"{r:.3f}x", "met": r <= t["cost_ratio"]})
    cli = results["cli"]
    rows.append({"target": f"dlrun --help < {t['help_seconds']} s", "measured": f"{cli['help']['median']:.2f} s",
                 "met": cli["help"]["median"] < t["help_seconds"]})
    heavy = cli["heavy_modules_after_import_cli"]
    rows.append({"target": "import dlrun.cli imports no torch", "measured": ", ".join(heavy) or "none imported",
                 "met": "torch" not in heavy})
    rows.append({"target": f"report (evaluate + diagnose + render, plots) < {t['report_seconds']} s",
                 "measured": f"{cli['report']['report']['median']:.2f} s",
                 "met": cli["report"]["report"]["median"] < t["report_seconds"]})
    rows.append({"target": f"default run end to end < {t['default_run_seconds']} s",
                 "measured": f"{cli['default_run']['wall']['median']:.2f} s",
                 "met": cli["default_run"]["wall"]["median"] < t["default_run_seconds"]})
    slope = results["scaling"].get("slope_10k_100k")
    if slope is not None:
        low, high = t["scaling_slope"]
        rows.append({"target": f"near-linear in samples: slope 10k->100k in [{low}, {high}]",
                     "measured": f"hand {slope['hand']:.2f}, dlrun {slope['dlrun']:.2f}",
                     "met": all(low <= s <= high for s in slope.values())})
    return rows


def print_tables(results: dict, console) -> None:
    from rich.table import Table

    m = results["machine"]
    console.print(f"\n[bold]device[/] {m['device']} ({m['cpu']}, {m['nproc']} cores, {m['threads']} torch threads), "
                  f"torch {m['torch']}, lightning {m['lightning'] or 'not installed'}, "
                  f"torch.cuda.is_available()={m['cuda_available']}; dlrun at {m.get('commit', '?')}"
                  f"{' + uncommitted ' + ', '.join(m['dlrun_modified']) if m.get('dlrun_modified') else ''}")
    g = results["quiet_gate"]
    if g["runs"]:
        console.print(f"[bold]shared machine[/] load average {results['load_before']} -> {results['load_after']}; "
                      f"other processes used {g['others_cores_during']['median']:.2f} cores (median, max "
                      f"{g['others_cores_during']['max']:.2f}) during the {g['runs']} timed runs; "
                      f"{g['runs_busy_during']} runs had >= {g['threshold_cores']} on average, "
                      f"{g['runs_started_busy']} started busy; {g['waited_seconds']} s spent waiting for quiet")
    s = results["settings"]
    table = Table(title=f"median epoch time (train + validation), epochs 2-{s['epochs']}, median \\[min-max] over "
                        f"{s['repeats']} interleaved runs")
    for col in ("case", "contender", "epoch", "vs hand loop", "extra per epoch", "final val loss"):
        table.add_column(col, justify="left" if col in ("case", "contender") else "right")
    for case, r in results["epoch_time"].items():
        for name in ("hand", "dlrun", "lightning"):
            if name in r:
                hand = name == "hand"
                table.add_row(case, name, ms(r[name]), "1" if hand else ratio(r["ratio"][name]),
                              "" if hand else ms(r["extra"][name]), f"{r['final_val_loss'][name]:.4f}")
    if not m["lightning"]:
        table.caption = "lightning is not installed: its column is skipped (pip install lightning)"
    console.print(table)

    table = Table(title="where dlrun's extra epoch time goes: the hand loop plus one piece of fit()'s work")
    for col in ("case", "variant", "epoch", "vs hand loop"):
        table.add_column(col, justify="left" if col in ("case", "variant") else "right")
    for case, r in results["attribution"].items():
        for name in r:
            if name != "ratio":
                table.add_row(case, name, ms(r[name]), ratio(r["ratio"][name]) if name != "hand" else "1")
    console.print(table)

    table = Table(title=f"whole per-epoch cost: (wall({s['long']} epochs) - wall({s['short']} epochs)) / "
                        f"{s['long'] - s['short']}, {s['cost_repeats']} interleaved repeats")
    for col in ("case", "contender", "per epoch", "vs hand loop", "of it outside the epoch span", "fixed per run",
                "cross-check: median epoch + outside", "vs hand loop "):
        table.add_column(col, justify="left" if col in ("case", "contender") else "right")
    for case, r in results["per_epoch_cost"].items():
        for name in ("hand", "dlrun"):
            dl = name == "dlrun"
            table.add_row(case, name, ms(r[name]["per_epoch"]), ratio(r["ratio"]) if dl else "1",
                          ms(r[name]["outside_epoch_span"], 3), ms(r[name]["fixed"], 1),
                          ms(r[name]["robust_per_epoch"]), ratio(r["robust_ratio"]) if dl else "1")
    console.print(table)

    cli = results["cli"]
    table = Table(title="the dlrun command (subprocesses), median \\[min-max]")
    table.add_column("what")
    table.add_column("wall", justify="right")
    table.add_row(f"dlrun --help (n={cli['help']['n']})", seconds(cli["help"]))
    table.add_row("heavy modules after `import dlrun.cli`", ", ".join(cli["heavy_modules_after_import_cli"]) or "none")
    run20 = cli["run_20_epochs"]
    table.add_row(f"dlrun, MLP, 20 epochs, no plots (n={run20['wall']['n']})", seconds(run20["wall"]))
    table.add_row("   of which fit()", seconds(run20["fit"]))
    table.add_row("   outside fit (start-up, data, evaluate, report)", seconds(run20["outside_fit"]))
    rep = cli["report"]
    table.add_row(f"default run in a fresh process, report steps (n={rep['report']['n']})", seconds(rep["report"]))
    for key in ("evaluate", "baselines", "diagnose", "render"):
        table.add_row(f"   {key}", ms(rep[key], 0))
    table.add_row("   run() outside fit (data, model, report; torch already imported)", seconds(rep["outside_fit"]))
    d = cli["default_run"]
    table.add_row(f"default `dlrun trainer.threads=2` end to end ({d['epochs']} epochs)", seconds(d["wall"]))
    console.print(table)

    sc = results["scaling"]
    table = Table(title=f"scaling: median epoch time, epochs 2-{s['scaling_epochs']}, "
                        f"{s['scaling_repeats']} interleaved repeats")
    for col in ("data / model", "hand", "dlrun", "dlrun vs hand", "us/sample hand", "us/sample dlrun"):
        table.add_column(col, justify="left" if col == "data / model" else "right")
    for row in sc["sizes"]:
        table.add_row(f"synthetic n={row['n_samples']} (train {row['n_train']}), MLP 256", ms(row["hand"]),
                      ms(row["dlrun"]), ratio(row["ratio"]), f"{row['us_per_sample']['hand']:.2f}",
                      f"{row['us_per_sample']['dlrun']:.2f}")
    for row in sc["widths"]:
        table.add_row(f"digits, MLP width {row['width']}", ms(row["hand"]), ms(row["dlrun"]), ratio(row["ratio"]),
                      "", "")
    if "slope_10k_100k" in sc:
        table.caption = (f"log-log slope of epoch time against samples, 10k -> 100k: hand "
                         f"{sc['slope_10k_100k']['hand']:.2f}, dlrun {sc['slope_10k_100k']['dlrun']:.2f} "
                         f"(1 = linear)")
    console.print(table)

    table = Table(title="targets (from the issue)")
    table.add_column("target")
    table.add_column("measured", justify="right")
    table.add_column("met")
    for row in results["targets"]:
        table.add_row(row["target"], row["measured"], "[green]met[/]" if row["met"] else "[bold red]missed[/]")
    console.print(table)


# ----------------------------------------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer repeats and epochs (~1 minute): a smoke check")
    parser.add_argument("--out", type=Path, help="JSON results (default benchmarks/results/engine[-quick].json)")
    parser.add_argument("--child-report", type=Path, help=argparse.SUPPRESS)  # internal: section 4's fresh process
    args = parser.parse_args()
    torch.set_num_threads(SETTINGS["threads"])
    if args.child_report:
        logging.disable(logging.WARNING)
        child_report(args.child_report)
        return

    from rich.console import Console

    console = Console(width=None if sys.stdout.isatty() else 132)  # a log file gets readable 132-column tables
    warnings.filterwarnings("ignore", message=".*does not have many workers.*")
    warnings.filterwarnings("ignore", message=".*barebones.*")
    warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning 2.6 on torch 2.14: not ours to fix
    p = QUICK if args.quick else FULL
    out = args.out or ROOT / "benchmarks" / "results" / ("engine-quick.json" if args.quick else "engine.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    lightning = lightning_available() is not None
    if not lightning:
        console.print("[yellow]lightning is not installed: its column is skipped (pip install lightning)[/]")

    started = time.perf_counter()
    results = {"machine": machine(), "settings": {**SETTINGS, **p, "quick": args.quick},
               "load_before": [round(x, 2) for x in os.getloadavg()]}
    digits = data.load(c.DigitsConfig(), c.SplitConfig(), c.ShiftConfig())
    with tempfile.TemporaryDirectory(prefix="bench_engine-") as tmp:
        scratch = Path(tmp)
        results["epoch_time"], results["attribution"], results["per_epoch_cost"] = {}, {}, {}
        for case in CASES:
            console.print(f"[bold]{case}[/]: epoch time ...")
            results["epoch_time"][case] = epoch_time(case, digits, p, lightning, scratch)
            console.print(f"[bold]{case}[/]: attribution ...")
            results["attribution"][case] = attribution(case, digits, p)
            console.print(f"[bold]{case}[/]: whole per-epoch cost ...")
            results["per_epoch_cost"][case] = per_epoch_cost(case, digits, p, scratch)
        console.print("[bold]dlrun command[/] (subprocesses) ...")
        results["cli"] = cli_section(p, scratch)
        console.print("[bold]scaling[/] ...")
        results["scaling"] = scaling(p, scratch)
    results["load_after"] = [round(x, 2) for x in os.getloadavg()]
    results["quiet_gate"] = GATE.summary()
    results["seconds"] = time.perf_counter() - started
    results["targets"] = judge(results)
    m = results["machine"]
    png = out.with_name(out.stem + "-scaling.png")
    plot_scaling(results["scaling"], png, f"{m['device']} ({m['cpu']}), torch {m['torch']}, "
                                          f"{SETTINGS['threads']} threads, {m['date']}")
    out.write_text(json.dumps(results, indent=1) + "\n")
    print_tables(results, console)
    console.print(f"\n{results['seconds']:.0f} s; wrote {out} and {png}")


if __name__ == "__main__":
    main()

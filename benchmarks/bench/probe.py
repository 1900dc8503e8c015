"""The cost of the training-health probes (report.probe_every): fit() on the default run with probes off and on.

    .venv/bin/python -m benchmarks.bench probe [--repeats 7] [--json PATH]

Both settings train the same model on the same data (digits, MLP 256-256, batch 64, 17 batches an epoch) for a fixed
number of epochs with early stopping off, interleaved A/B/A/B so that a busy moment hits both; the cost is the
median of the per-pair ratios of epoch time (epochs after the first), against the goal of at most 2%.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from benchmarks.bench.timing import interleaved, median_after_first, paired_ratio

GOAL = 1.02


def _epoch_seconds(probe_every: int, epochs: int) -> float:
    import torch

    from dlrun import data, models
    from dlrun.config import (Config, DigitsConfig, EarlyStopConfig, MLPConfig, OptimConfig, RegConfig,
                              ReportConfig, SchedConfig, ShiftConfig, SplitConfig, TrainerConfig)
    from dlrun.engine import fit

    cfg = Config(model=MLPConfig(), dataset=DigitsConfig(), split=SplitConfig(), reg=RegConfig(),
                 early_stop=EarlyStopConfig(enabled=False), optim=OptimConfig(), sched=SchedConfig(),
                 trainer=TrainerConfig(max_epochs=epochs, progress="false", tensorboard=False, threads="1"),
                 report=ReportConfig(probe_every=probe_every), shift=ShiftConfig())
    torch.set_num_threads(1)
    torch.manual_seed(0)
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    history = fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer,
                  probe_every=probe_every)
    return median_after_first([row["epoch_seconds"] for row in history.rows])


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench probe", description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    times: dict[str, list[float]] = {"off": [], "on": []}
    for _, name in interleaved(["off", "on"], args.repeats):
        times[name].append(_epoch_seconds(0 if name == "off" else 1, args.epochs))
    ratio = paired_ratio(times["on"], times["off"])
    print(f"epoch seconds, probes off: {times['off']}")
    print(f"epoch seconds, probes on (every epoch): {times['on']}")
    print(f"probe cost: on / off = {ratio['median']:.3f} median over {ratio['n']} pairs "
          f"[{ratio['min']:.3f}, {ratio['max']:.3f}] (goal <= {GOAL})")
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps({"off": times["off"], "on": times["on"], "ratio": ratio}, indent=2))

"""How often does each verdict fire? Healthy runs (false positives) and every planted shift (power), over seeds.

    .venv/bin/python benchmarks/calibrate_diagnosis.py [--seeds 100] [--out benchmarks/results/calibration.json]

Each seed changes the split (split.seed) and the training (trainer.seed) of the default run (digits, MLP 256-256,
Adam 1e-3, early stopping on val_loss, patience 10, up to 50 epochs). The model is trained ONCE per seed; every
shift type (gaussian_noise, rotation, blur, contrast, occlusion, feature_scale, label_prior) at every severity 1-5,
and gaussian_noise at severity 3 with shift.fraction 0.25 and 0.5, is then planted in the test split of the same
split (the training and validation data are identical, so the same model applies) and diagnosed. A verdict on the
unshifted test split is a false positive. For each cell the table gives the firing rate with its Wilson 95%
interval and the median move of the test error (test - val), so a reader sees where the error moves by more than
the tolerance. This is a measurement, not a test (tests/report/test_calibration.py is CI's version).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SHIFTS = ("gaussian_noise", "rotation", "blur", "contrast", "occlusion", "feature_scale", "label_prior")
SCENARIOS = {"healthy": {}} | {f"{s}_{level}": {"name": s, "severity": level} for s in SHIFTS for level in range(1, 6)} \
    | {f"gaussian_noise_3_fraction_{f}": {"name": "gaussian_noise", "severity": 3, "fraction": f} for f in (0.25, 0.5)}
FINDINGS = ("underfitting", "overfitting", "data_mismatch", "distribution_shift")
COLUMNS = (*FINDINGS, "label_free")  # label_free: any label-free test fired (evidence, or a note when the error held)


IMAGE_ONLY = ("gaussian_noise", "rotation", "blur", "contrast", "occlusion")  # dlrun/data/shift.py
# planted causes, each its own training run per seed: a learning rate too small to learn in 10 epochs, and a big
# model on a tenth of the data with no regularisation and no early stopping
PLANTED = {"planted_underfit_tiny_lr": {"optim": {"lr": 1e-6}, "trainer": {"max_epochs": 10}},
           "planted_overfit_train_10pct": {"split": {"train": 0.1, "val": 0.45, "test": 0.45},
                                          "early_stop": {"enabled": False, "restore_best": False},
                                          "trainer": {"max_epochs": 60}},
           "planted_overfit_train_5pct": {"split": {"train": 0.05, "val": 0.475, "test": 0.475},
                                         "early_stop": {"enabled": False, "restore_best": False},
                                         "trainer": {"max_epochs": 60}}}


def config(seed: int, model: str = "mlp", dataset: str = "digits", samples: int = 0, **groups):
    from dataclasses import replace as with_

    from dlrun import config as c

    models = {"mlp": c.MLPConfig, "lenet": c.LeNetConfig}
    datasets = {"digits": c.DigitsConfig, "synthetic": c.SyntheticConfig}
    ds = datasets[dataset]()
    if samples:
        ds = with_(ds, n_samples=samples)
    cfg = c.Config(model=models[model](), dataset=ds, split=c.SplitConfig(seed=seed),
                   reg=c.RegConfig(), early_stop=c.EarlyStopConfig(), optim=c.OptimConfig(), sched=c.SchedConfig(),
                   trainer=c.TrainerConfig(seed=seed, progress="false", tensorboard=False, threads=1),
                   report=c.ReportConfig(plots=False), shift=c.ShiftConfig())
    for group, values in groups.items():
        setattr(cfg, group, with_(getattr(cfg, group), **values))
    return cfg


def scenarios(dataset: str) -> dict:
    """The shifts that apply: image-only shifts need images."""
    if dataset == "digits":
        return SCENARIOS
    return {k: v for k, v in SCENARIOS.items() if not v or v["name"] not in IMAGE_ONLY}


def _train(cfg):
    import torch

    from dlrun import data, models
    from dlrun.engine import fit

    torch.manual_seed(cfg.trainer.seed)
    splits = data.load(cfg.dataset, cfg.split, cfg.shift)
    torch.manual_seed(cfg.trainer.seed)
    model = models.build(cfg.model, splits.in_shape, splits.num_outputs, cfg.reg)
    return splits, model, fit(model, splits, cfg.optim, cfg.sched, cfg.reg, cfg.early_stop, cfg.trainer)


def one_seed(job: tuple) -> dict:
    """{scenario: {finding: detected, "test_move": test - val error}} for one trained model (and the planted ones)."""
    import torch

    from dlrun import data
    from dlrun.config import ShiftConfig
    from dlrun.engine import evaluate
    from dlrun.pipeline import _as_dict
    from dlrun.report import baselines_for, diagnose

    seed, model_name, dataset, planted, samples = job
    torch.set_num_threads(1)
    cfg = config(seed, model_name, dataset, samples)
    clean, model, history = _train(cfg)
    baselines = baselines_for(clean)
    out = {}
    for name, groups in (PLANTED.items() if planted else []):
        p_cfg = config(seed, model_name, dataset, samples, **groups)
        p_splits, p_model, p_history = _train(p_cfg)
        evaluation = evaluate(p_model, p_splits, p_cfg.trainer)
        d = diagnose(p_history, evaluation, p_cfg.report, [], _as_dict(p_cfg), baselines=baselines_for(p_splits),
                     class_names=p_splits.class_names)
        out[name] = {f: bool(getattr(d, f).detected) for f in FINDINGS}
        out[name]["label_free"] = any(t["fires"] for t in d.shift_tests.values())
        out[name]["test_move"] = evaluation.splits["test"].error - evaluation.splits["val"].error
        out[name]["val_gap"] = evaluation.splits["val"].error - evaluation.splits["train"].error
    for name, shift in scenarios(dataset).items():
        splits = clean if not shift else data.load(cfg.dataset, cfg.split, replace(ShiftConfig(), seed=seed, **shift))
        evaluation = evaluate(model, splits, cfg.trainer)
        d = diagnose(history, evaluation, cfg.report, [], _as_dict(cfg), baselines=baselines,
                     class_names=splits.class_names)
        out[name] = {f: bool(getattr(d, f).detected) for f in FINDINGS}
        out[name]["label_free"] = any(t["fires"] for t in d.shift_tests.values())
        out[name]["test_move"] = evaluation.splits["test"].error - evaluation.splits["val"].error
        out[name]["val_gap"] = evaluation.splits["val"].error - evaluation.splits["train"].error
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "calibration.json"))
    parser.add_argument("--plot", default=None, help="write the power curves to this PNG")
    parser.add_argument("--model", default="mlp", choices=("mlp", "lenet"))
    parser.add_argument("--dataset", default="digits", choices=("digits", "synthetic"))
    parser.add_argument("--samples", type=int, default=0,
                        help="synthetic only: dataset.n_samples (larger splits confirm smaller gaps)")
    parser.add_argument("--planted", action="store_true", help="also train the planted under/overfitting runs")
    args = parser.parse_args()

    import logging
    from concurrent.futures import ProcessPoolExecutor

    import numpy as np
    import torch

    from dlrun.report.stats import error_interval

    logging.disable(logging.INFO)
    started = time.perf_counter()
    with ProcessPoolExecutor(args.workers) as pool:
        per_seed = []
        jobs = [(seed, args.model, args.dataset, args.planted, args.samples) for seed in range(args.seeds)]
        for seed, result in enumerate(pool.map(one_seed, jobs)):
            per_seed.append(result)
            print(f"seed {seed:3d}: healthy " + " ".join(f"{f}={'Y' if result['healthy'][f] else '.'}"
                                                          for f in FINDINGS), flush=True)
    n = args.seeds
    rows = {}
    for name in per_seed[0]:
        rows[name] = {"test_move_median": float(np.median([r[name]["test_move"] for r in per_seed])),
                      "val_gap_median": float(np.median([r[name]["val_gap"] for r in per_seed]))}
        for f in COLUMNS:
            k = sum(r[name][f] for r in per_seed)
            low, high = error_interval(k, n)
            rows[name][f] = {"fired": k, "runs": n, "rate": k / n, "interval": [low, high]}
    result = {"seeds": n, "model": args.model, "dataset": args.dataset, "samples": args.samples, "torch": torch.__version__, "device": "cpu", "seconds": time.perf_counter() - started,
              "date": time.strftime("%Y-%m-%d"), "results": rows}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(markdown(result))
    if args.plot:
        plot_power(result, args.plot)
    print(f"{result['seconds']:.0f} s; written to {args.out}")


def plot_power(result: dict, path: str) -> None:
    """Power of the distribution-shift verdict and of the label-free tests against severity, one line per shift."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 3.8), sharey=True)
    for ax, column, title in zip(axes, ("distribution_shift", "label_free"),
                                 ("distribution-shift verdict", "any label-free test fires")):
        for shift in (s for s in SHIFTS if f"{s}_1" in result["results"]):
            rates = [result["results"][f"{shift}_{level}"][column]["rate"] for level in range(1, 6)]
            ax.plot(range(1, 6), rates, marker="o", label=shift)
        ax.axhline(0.95, color="grey", lw=0.8, ls="--")
        ax.set_xlabel("severity")
        ax.set_title(title)
        ax.set_xticks(range(1, 6))
    axes[0].set_ylabel(f"rate over {result['seeds']} seeds")
    axes[1].legend(fontsize=8, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=80)


def markdown(result: dict) -> str:
    lines = ["| scenario | val - train, test - val error (medians) | " + " | ".join(COLUMNS) + " |",
             "|---|---:|" + "---|" * len(COLUMNS)]
    for name, row in result["results"].items():
        cells = [f"{row[f]['fired']}/{row[f]['runs']} [{row[f]['interval'][0]:.2f}, {row[f]['interval'][1]:.2f}]"
                 for f in COLUMNS]
        lines.append(f"| {name} | {100 * row['val_gap_median']:+.1f}, {100 * row['test_move_median']:+.1f} pts | "
                     + " | ".join(cells) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    main()

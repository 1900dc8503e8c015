"""Engine benchmark, section 5: epoch time against dataset size (synthetic, 1k-100k samples) and MLP width
(64-1024), the hand loop and dlrun's fit() interleaved, plus a PNG of both."""

from __future__ import annotations

import math
from pathlib import Path

from dlrun import config as c
from dlrun import data

from .contenders import build_mlp, dlrun_fit, hand_fit
from .timing import GATE, interleaved, median_after_first, paired_ratio, spread


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

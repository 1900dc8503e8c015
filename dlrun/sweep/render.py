"""summary.html: the sweep's table and a plot of the monitored metric against each swept parameter, in one
self-contained file (plots inlined as PNG), in the style of the run report."""

from __future__ import annotations

import base64
import io
from pathlib import Path

from dlrun.sweep.summary import (_number, command, evaluated_note, fmt, interval_caption, ranked, ranked_cell,
                                 runner_up_sentence, tally, with_interval)

TEMPLATES = Path(__file__).resolve().parent / "templates"


def html(summary: dict, plots: bool = True) -> str:
    from jinja2 import Environment, FileSystemLoader, select_autoescape

    env = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=select_autoescape(["html", "j2"]))
    env.filters["fmt"] = fmt
    figures = {key: param_plot(summary, key) for key in summary["swept"]} if plots and summary["jobs"] else {}
    return env.get_template("summary.html.j2").render(s=summary, command=command, figures=figures, tally=tally(summary),
                                                      caption=interval_caption(summary),
                                                      evaluated=evaluated_note(summary),
                                                      with_interval=with_interval,
                                                      cell=lambda row: ranked_cell(row, summary),
                                                      runner_up=runner_up_sentence(summary))


def param_plot(summary: dict, key: str) -> str:
    """A PNG (base64) of the ranking metric against one swept parameter: one point per job with its interval when it
    has one, the mean per value joined by a line; a log axis when positive numbers span more than two decades;
    categories otherwise."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    points = [(r, *ranked(r, summary)) for r in summary["jobs"]]
    points = [p for p in points if p[1] is not None and np.isfinite(p[1])]
    rows = [r for r, _, _ in points]
    y = np.array([value for _, value, _ in points], dtype=float)  # (n,)
    # (2, n): from each point down to its interval's low bound and up to its high one; 0 for a job without one, and
    # where the ranked value lies a rounding error outside its interval (summary.SAME_VALUE): matplotlib refuses < 0
    yerr = np.array([[value - i[0], i[1] - value] if i and None not in i else [0.0, 0.0]
                     for _, value, i in points], dtype=float).reshape(-1, 2).T.clip(min=0)
    values = [r["params"].get(key, "(default)") for r in rows]
    numbers = [_number(v) for v in values]
    numeric = bool(rows) and all(x is not None for x in numbers)
    fig, ax = plt.subplots(figsize=(5.2, 3.4))
    if numeric:
        x = np.array(numbers, dtype=float)
        order = sorted(set(x))
        means = [np.mean(y[x == v]) for v in order]
        if min(order) > 0 and max(order) / min(order) > 100:
            ax.set_xscale("log")
    else:
        order = sorted(set(values), key=lambda v: values.index(v))
        x = np.array([order.index(v) for v in values], dtype=float)
        means = [np.mean([yi for yi, v in zip(y, values) if v == o]) for o in order]
        ax.set_xticks(range(len(order)), [str(o) for o in order], rotation=20, fontsize=9)
        order = list(range(len(order)))
    ax.errorbar(x, y, yerr=yerr, fmt="o", alpha=0.6, capsize=3, label="job (its interval)")
    ax.plot(order, means, "-", color="C1", label="mean")
    ax.set_xlabel(key)
    ax.set_ylabel(f"{summary['rank_by']['metric']} ({summary['rank_by']['mode']})")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=90)
    plt.close(fig)
    return base64.b64encode(buf.getvalue()).decode("ascii")

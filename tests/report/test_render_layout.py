"""A report read at a glance, checked on a real two-epoch run (it underfits, and a planted shift degrades its test
split): the verdict, focus and first-command sentences come first, the learning curves span the column with a
legend legible at the size the page shows it, the other plots share a grid aligned at the top, evidence reads in
percentages with intervals and the raw test statistics are folded away; the terminal prints commands outside its
panel."""

from __future__ import annotations

import base64
import html
import io
import re
from pathlib import Path

import pytest
from PIL import Image

from dlrun.console import TerminalUI
from dlrun.pipeline import run
from dlrun.report import plots
from dlrun.report.render import PAGE_WIDTH, PLOT_TITLES
from tests.conftest import make_config

OVERRIDES = ["trainer.max_epochs=2", "shift=gaussian_noise"]
PERCENT_WITH_INTERVAL = r"\d+\.\d% \[\d+\.\d, \d+\.\d\]"  # 26.1% [21.8, 30.9]


@pytest.fixture(scope="module")
def two_epoch_run(tmp_path_factory):
    """(report, report.html, report.md, legend font sizes in points per PNG name, as matplotlib drew them)."""
    legends: dict[str, list[float]] = {}
    save = plots._save

    def recording_save(fig, path):
        drawn = [*fig.legends, *(ax.get_legend() for ax in fig.axes)]
        legends[Path(path).stem] = [t.get_fontsize() for legend in drawn if legend for t in legend.get_texts()]
        return save(fig, path)

    run_dir = tmp_path_factory.mktemp("run")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plots, "_save", recording_save)
        report = run(make_config(trainer={"max_epochs": 2}, shift={"name": "gaussian_noise"}), run_dir,
                     overrides=OVERRIDES).report
    return report, (run_dir / "report.html").read_text(), (run_dir / "report.md").read_text(), legends


def _text(markup: str) -> str:
    """The words of an HTML fragment, tags removed and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", markup))


def _expected_first_command(report: dict) -> str:
    return next(f["actions"][0]["command"] for f in report["diagnosis"].values() if f["detected"] and f["actions"])


@pytest.mark.slow
def test_the_three_sentences_come_before_the_first_plot(two_epoch_run):
    report, page, markdown, _ = two_epoch_run
    fired = {name: f["severity"] for name, f in report["diagnosis"].items() if f["detected"]}
    assert fired, "the two-epoch run should underfit: the test needs a finding with a command"
    first_image = page.index("<img")
    top = _text(page[:first_image])
    for name, severity in fired.items():
        assert f"{name.replace('_', ' ')} ({severity})" in top.lower()
    focus = report["decomposition"]["focus"].replace("_", " ")
    assert f"Work first on {focus}" in top
    assert _expected_first_command(report) in top
    for anchor in ('id="verdict"', 'id="focus"', 'id="first-command"'):
        assert page.index(anchor) < first_image
    # report.md: the same three sentences, before any section
    head = markdown[:markdown.index("\n## ")]
    assert "**Verdict.**" in head and f"Work first on {focus}" in head
    assert f"```sh\n{_expected_first_command(report)}\n```" in head  # a whole line to copy


@pytest.mark.slow
def test_learning_curves_span_the_column_with_a_legible_legend(two_epoch_run):
    _, page, _, legends = two_epoch_run
    figure = re.search(r'<figure class="wide"><img alt="Learning curves" src="data:image/png;base64,([^"]+)"', page)
    assert figure and page.index('<img alt="Learning curves"') == page.index("<img")  # the first plot on the page
    assert re.search(r"(?m)^\s*figure\.wide img \{[^}]*(?<!-)width: 100%", page)  # the rule of the top figure
    assert re.search(rf"body \{{[^}}]*max-width: {PAGE_WIDTH}px", page)
    image = Image.open(io.BytesIO(base64.b64decode(figure.group(1))))
    dpi = image.info["dpi"][0]
    assert image.width >= 900 and abs(dpi - plots.DPI) < 1
    # a point of the figure is dpi/72 PNG pixels; the page shows the PNG at PAGE_WIDTH CSS pixels, 96 per inch
    shown = PAGE_WIDTH / image.width
    smallest = min(legends["learning_curves"])
    assert smallest * dpi / 72 * shown * 72 / 96 >= 9, f"legend font {smallest} pt shows smaller than 9 pt"


@pytest.mark.slow
def test_other_plots_share_a_grid_aligned_at_the_top(two_epoch_run):
    report, page, _, _ = two_epoch_run
    style = page[page.index("<style>"):page.index("</style>")]
    grid = re.search(r"\.plots \{([^}]*)\}", style)
    assert grid and "display: grid" in grid.group(1) and "align-items: start" in grid.group(1)
    assert "inline-block" not in style  # inline figures line up on their bottom edge
    inside = page[page.index('<div class="plots">'):]
    inside = inside[:inside.index("</div>")]
    # the learning curves lead the page and the training-health plot sits in its own section
    others = [name for name in report["files"]["plots"] if name not in ("learning_curves", "training_health")]
    assert others and all(f'alt="{PLOT_TITLES[name]}"' in inside for name in others)


@pytest.mark.slow
def test_evidence_in_percent_with_intervals_and_statistics_folded_away(two_epoch_run):
    report, page, markdown, _ = two_epoch_run
    findings = page[page.index("<h2>Verdicts</h2>"):page.index("<h2>Error decomposition")]
    assert re.search(PERCENT_WITH_INTERVAL + " vs validation error " + PERCENT_WITH_INTERVAL, _text(findings))
    details = page[page.index("<details>"):page.index("</details>")]
    outside = page.replace(details, "")
    for test in report["evidence"]["shift_tests"].values():
        assert test["what"] in details and f"{test['what']}: p = " not in outside
    assert "p = " not in _text(outside) and "p-value" not in outside
    decomposition = page[page.index("<h2>Error decomposition"):page.index("<h2>Figures per split")]
    numbers = re.findall(r'<td class="num">([^<]*)</td>', decomposition)
    assert numbers and all(n.endswith("%") for n in numbers if n[:1].isdigit() or n[:1] == "-")
    md_details = markdown[markdown.index("<details>"):markdown.index("</details>")]
    assert "p = " not in markdown.replace(md_details, "")


def test_the_terminal_prints_the_first_command_whole_below_the_panel(capsys):
    command = "dlrun " + " ".join(f"model.hidden=[{w},{w}] reg.dropout=0.{w}" for w in range(100, 130))  # > 600 chars
    report = {
        "run": {"model": "mlp", "dataset": "digits", "epochs_run": 2, "best_epoch": 2, "stop_reason": "max_epochs",
                "task": "classification"},
        "metrics": {"val": {"n": 360, "loss": 0.5, "error": 0.1, "error_interval": [0.07, 0.14]}},
        "diagnosis": {"underfitting": {"detected": True, "severity": "severe", "evidence": ["training error 15%"],
                                       "actions": [{"text": "train longer", "command": command}]}},
        "files": {"markdown": "/tmp/run/report.md"},
    }
    TerminalUI("false").summary(report)
    lines = capsys.readouterr().out.splitlines()
    assert command in lines  # one line, nothing added, nothing cut
    panel = [line for line in lines if "│" in line]
    assert panel and not any("model.hidden" in line for line in panel)


def test_without_a_finding_the_first_command_is_a_notes_suggestion(capsys):
    """No finding fired, but a note suggests a run (here: more epochs for a validation loss still falling): the
    report's first command and the terminal's "next" are that run, not "none to run"."""
    from dlrun.report.render import first_action

    longer = {"text": "train longer", "command": "dlrun trainer.max_epochs=100"}
    report = {
        "run": {"model": "mlp", "dataset": "digits", "epochs_run": 50, "best_epoch": 50, "stop_reason": "max_epochs",
                "task": "classification"},
        "metrics": {"val": {"n": 360, "loss": 0.5, "error": 0.1, "error_interval": [0.07, 0.14]}},
        "diagnosis": {"underfitting": {"detected": False, "severity": "none", "evidence": [], "actions": []}},
        "evidence": {"versus_linear": {"fires": False}, "still_improving": {"action": longer}},
        "files": {"markdown": "/tmp/run/report.md"},
    }
    assert first_action(report) == {"lead": "No finding fired; a note suggests", **longer}
    TerminalUI("false").summary(report)
    out = capsys.readouterr().out
    assert "next: No finding fired; a note suggests: train longer" in out and longer["command"] in out.splitlines()
    report["evidence"]["still_improving"] = None
    assert first_action(report) is None


def test_an_interrupted_runs_first_command_resumes_it():
    """A run Ctrl-C stopped at epoch 74 of 500 was told to start again from scratch with trainer.max_epochs=1000
    (its loss was still falling), or "None to run"; its resume command was only in report.json and the log."""
    from dlrun.report.render import first_action

    resume = "dlrun model=lenet trainer.max_epochs=500 trainer.resume=/tmp/run"
    report = {
        "run": {"model": "lenet", "dataset": "digits", "epochs_run": 74, "max_epochs": 500, "best_epoch": 74,
                "stop_reason": "interrupted", "task": "classification", "resume_command": resume},
        "diagnosis": {"underfitting": {"detected": True, "severity": "mild", "evidence": [],
                                       "actions": [{"text": "raise the learning rate", "command": "dlrun optim.lr=1"}]}},
    }
    first = first_action(report)
    assert first["command"] == resume and first["lead"] == "The run was interrupted at epoch 74 of 500"
    report["run"]["stop_reason"] = "max_epochs"
    assert first_action(report)["command"] == "dlrun optim.lr=1"


def test_the_focus_sentence_points_at_the_shift_finding_when_it_fired():
    """Focus on variance and a first command for the shift must not read as two directions without a word."""
    from dlrun.report.render import _focus_sentence

    decomposition = {"focus": "variance", "variance": 0.022, "intervals": {"variance": [0.011, 0.043]}}
    plain = _focus_sentence(decomposition, True, {"overfitting"})
    assert plain.startswith("Work first on variance") and "distribution-shift" not in plain
    assert "the gap from validation to test is the distribution-shift finding's" in _focus_sentence(
        decomposition, True, {"overfitting", "distribution_shift"})


def test_a_focus_its_finding_did_not_confirm_is_advice_not_an_order():
    """No finding fired, so the first command is 'None to run': the focus must not say 'Work first on' a term that
    is not confirmed beyond the tolerance."""
    from dlrun.report.diagnosis import focus_note
    from dlrun.report.render import _focus_sentence

    decomposition = {"focus": "variance", "variance": 0.022, "intervals": {"variance": [0.011, 0.043]},
                     "avoidable_bias": 0.01, "focus_advice": "more regularisation, more data"}
    sentence = _focus_sentence(decomposition, True, set())
    assert sentence.startswith("Largest of Ng's error terms: variance (2.2% [1.1, 4.3]), not confirmed beyond the "
                               "tolerance (the overfitting finding did not fire); to lower it, work on it first: more "
                               "regularisation, more data"), sentence
    assert "Work first" not in sentence
    note = focus_note(decomposition, "zero", "classification", fired_with_actions=set())
    assert "not confirmed beyond the tolerance (the overfitting finding did not fire)" in note, note
    assert "not confirmed" not in focus_note(decomposition, "zero", "classification",
                                             fired_with_actions={"overfitting"})
    # a finding that fired has been confirmed, with next runs of its own or not (a command another finding gives)
    assert "Work first on variance" in _focus_sentence(decomposition, True, set(), {"overfitting"})
    assert "not confirmed" not in focus_note(decomposition, "zero", "classification", set(), set(), {"overfitting"})
    # a larger term not confirmed above 0 (data mismatch 3% [-1, 6]): the focus is the largest confirmed one
    larger = {**decomposition, "data_mismatch": 0.03, "focus_confirmed_only": True}
    assert "(2.2% [1.1, 4.3], the largest of Ng's error terms confirmed above 0)" in _focus_sentence(
        larger, True, {"overfitting"})
    assert "variance is the largest term confirmed above 0 (" in focus_note(larger, "zero", "classification")
    # it fired, but its next runs wait for the underfitting's (they would raise the training error): say so
    waiting = _focus_sentence(decomposition, True, {"underfitting"}, {"underfitting", "overfitting"})
    assert waiting == ("Largest of Ng's error terms: variance (2.2% [1.1, 4.3]); the overfitting finding's next runs "
                       "wait until the training error is fixed: first, the underfitting finding's next runs."), waiting
    assert "wait until the training error is fixed" in focus_note(decomposition, "zero", "classification", False,
                                                                  {"underfitting"}, {"underfitting", "overfitting"})


def test_a_no_signal_verdict_heads_with_the_held_out_numbers_it_was_judged_on():
    """'Training error 55.9% vs a linear model's 58.6%' reads as a training error below its reference: the verdict
    compares validation error with chance and with a linear model."""
    from dlrun.report.render import _headline

    finding = {"stats": {"no_signal": True, "reference": 0.586, "reference_name": "a linear model's training error",
                         "chance_error": 0.5, "simple_val_error": 0.51}}
    metrics = {"train": {"error": 0.559, "error_interval": [0.531, 0.587]},
               "val": {"error": 0.49, "error_interval": [0.44, 0.54]}}
    line = _headline("underfitting", finding, metrics, True)
    assert line.startswith("Validation error 49.0% [44.0, 54.0] vs chance 50.0% and a linear model's 51.0%"), line
    del finding["stats"]["no_signal"]
    assert _headline("underfitting", finding, metrics, True).startswith("Training error 55.9%")

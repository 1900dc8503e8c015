"""Planted scenarios, end to end on small data: each run is built to show one condition, and the report must name
it (and a healthy run must name none). Each run takes a second or two on digits."""

from __future__ import annotations

import json

import pytest

from dlrun.config import MLPConfig, SyntheticConfig
from dlrun.pipeline import run
from tests.conftest import make_config

pytestmark = pytest.mark.slow


def _verdicts(report: dict) -> dict[str, str]:
    return {name: (f["severity"] if f["detected"] else "no") for name, f in report["diagnosis"].items()}


def _run(tmp_path, overrides: list[str], **groups) -> dict:
    return run(make_config(**groups), tmp_path, overrides=overrides).report


def test_healthy_run_raises_no_finding(tmp_path):
    report = _run(tmp_path, [], trainer={"max_epochs": 40})
    assert _verdicts(report) == {"underfitting": "no", "overfitting": "no", "data_mismatch": "no",
                                 "distribution_shift": "no"}
    assert report["metrics"]["test"]["error"] < 0.06


def test_run_built_to_overfit_is_reported_as_overfitting(tmp_path):
    # a tiny training split, a large model, no regularisation, no early stopping
    overrides = ["model.hidden=[512,512]", "split.train=0.1", "split.val=0.45", "split.test=0.45",
                 "early_stop.enabled=false"]
    report = _run(tmp_path, overrides, model=MLPConfig(hidden=[512, 512]),
                  split={"train": 0.1, "val": 0.45, "test": 0.45}, early_stop={"enabled": False},
                  trainer={"max_epochs": 60})
    verdicts = _verdicts(report)
    assert verdicts["overfitting"] != "no" and verdicts["underfitting"] == "no"
    assert verdicts["distribution_shift"] == "no"
    actions = report["diagnosis"]["overfitting"]["actions"]
    # the seed method's order: more regularisation first, then less capacity, then more data
    assert "reg.weight_decay=" in actions[0]["command"] and "reg.dropout=0.2" in actions[0]["command"]
    assert actions[0]["command"].startswith("dlrun 'model.hidden=[512,512]' split.train=0.1")  # quoted for the shell
    assert any("model.hidden=[256,256]" in a["command"] for a in actions)
    assert "split.train=0.8" in actions[-1]["command"]


def test_huge_weight_decay_underfits_and_suggests_less_regularisation(tmp_path):
    report = _run(tmp_path, ["reg.weight_decay=10"], reg={"weight_decay": 10.0}, trainer={"max_epochs": 20})
    under = report["diagnosis"]["underfitting"]
    assert under["detected"] and under["severity"] == "severe"
    assert not report["diagnosis"]["overfitting"]["detected"]
    assert "less regularisation" in under["actions"][0]["text"]
    assert "reg.weight_decay=0.1" in under["actions"][0]["command"]


def test_tiny_learning_rate_underfits_and_suggests_a_larger_one(tmp_path):
    report = _run(tmp_path, ["optim.lr=1e-6"], optim={"lr": 1e-6}, trainer={"max_epochs": 10})
    under = report["diagnosis"]["underfitting"]
    assert under["detected"]
    assert any("learning rate is too small" in e for e in under["evidence"])
    assert under["actions"][0]["command"] == "dlrun optim.lr=0.001"  # Adam's usual rate: 1e-5 would not train either


def test_shuffled_labels_are_reported_as_no_signal(tmp_path):
    # every label replaced by a random class: nothing relates inputs and outputs; 2000 validation samples confirm
    # that neither the network nor a linear model beats chance by the tolerance (at the default 2000 samples, 400
    # validation ones cannot: a note then, tests/report/test_diagnosis.py)
    report = _run(tmp_path, ["dataset=synthetic", "dataset.label_noise=1.0", "dataset.n_samples=10000"],
                  dataset=SyntheticConfig(label_noise=1.0, n_samples=10000), trainer={"max_epochs": 30})
    under = report["diagnosis"]["underfitting"]
    assert under["detected"] and under["severity"] == "severe"
    assert any("no usable relation" in e for e in under["evidence"])
    assert "check the data and the labels" in under["actions"][0]["text"]


@pytest.mark.parametrize("shift", ["gaussian_noise", "label_prior"])
def test_planted_shift_is_detected(tmp_path, shift):
    report = _run(tmp_path, [f"shift={shift}", "shift.severity=5"], shift={"name": shift, "severity": 5},
                  trainer={"max_epochs": 40})
    verdicts = _verdicts(report)
    assert verdicts["underfitting"] == "no" and verdicts["overfitting"] == "no"
    fired = report["diagnosis"]["distribution_shift"]["stats"]["tests_fired"]
    assert fired, "a label-free test between validation and test must fire"
    if shift == "label_prior":
        # the class priors moved but the error did not: the label-free tests report it as a note, not a degradation
        assert verdicts["distribution_shift"] == "no" and "label_shift" in fired
        note = next(n for n in report["notes"] if "test split differs" in n)
        assert "chi-square on the predicted-class histograms" in note and "a shift the model tolerates" in note
        assert "the class shares moved (" in note  # what moved, not only that something did
    else:
        assert verdicts["distribution_shift"] == "severe"
        actions = report["diagnosis"]["distribution_shift"]["actions"]
        # the inputs moved (features, softmax): augmentation first, no reweighting, no command twice
        assert "augment" in actions[0]["text"] and not any("reweight" in a["text"] for a in actions)
        commands = [a["command"] for f in report["diagnosis"].values() for a in f["actions"]]
        assert len(commands) == len(set(commands))
    saved = json.loads((tmp_path / "report.json").read_text())
    assert saved["run"]["shift"] == shift
    # the header says how strong, and when label_prior subsampled the test split, how much of it is left
    detail = saved["run"]["shift_detail"]
    assert detail.startswith("severity 5, fraction ")
    assert (f"; kept {saved['metrics']['test']['n']} of 360 test samples" in detail) == (shift == "label_prior")
    assert f"planted shift: {shift}, {detail})" in (tmp_path / "report.md").read_text()


def test_report_files_and_plots(tmp_path):
    _run(tmp_path, [], trainer={"max_epochs": 3})
    report = json.loads((tmp_path / "report.json").read_text())
    names = ("learning_curves", "confusion_matrix", "per_class_error", "confidence", "training_health", "feature_pca")
    assert sorted(report["files"]["plots"]) == sorted(names)
    for name in names:
        assert (tmp_path / "plots" / f"{name}.png").stat().st_size > 1000
    html = (tmp_path / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 6 and "src=\"http" not in html  # self-contained
    assert "Verdicts" in html and "Error decomposition" in html
    assert set(report["evidence"]["shift_tests"]) == {"ks_softmax", "label_shift", "mmd_features"}

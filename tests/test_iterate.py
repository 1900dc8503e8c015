"""dlrun-iterate: the diagnose-and-retry loop, on planted starts, with every step a normal run folder."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dlrun.errors import DlrunError
from dlrun.iterate import candidates, change_between, overrides_of, parse


def test_settings_launch_options_and_overrides_are_told_apart():
    settings, launch, overrides = parse(["--config-dir", "/c", "optim.lr=0.1", "iterate.budget=3"])
    assert settings["budget"] == 3 and launch == ["--config-dir", "/c"] and overrides == ["optim.lr=0.1"]
    with pytest.raises(DlrunError, match="iterate.budgt is not a setting of dlrun-iterate, expected one of "
                                         "iterate.budget, iterate.dir"):
        parse(["iterate.budgt=3"])
    with pytest.raises(DlrunError, match="iterate.budget=0"):
        parse(["iterate.budget=0"])
    with pytest.raises(DlrunError, match="-m is not supported"):
        parse(["-m", "reg.dropout=0,1"])


def test_the_next_change_follows_the_focus_and_never_acts_on_the_test_split():
    def finding(detected, *commands):
        return {"detected": detected, "severity": "mild" if detected else "none",
                "actions": [{"text": f"try {c}", "command": f"dlrun --config-dir /c a=1 {c}"} for c in commands]}

    report = {"decomposition": {"focus": "variance"},
              "diagnosis": {"underfitting": finding(True, "optim.lr=0.01"),
                            "overfitting": finding(True, "reg.dropout=0.5", "reg.weight_decay=0.001"),
                            "data_mismatch": finding(False, "reg.augment.noise=0.1"),
                            "distribution_shift": finding(True, "split.seed=1")}}
    picked = candidates(report)
    assert [c[0] for c in picked] == ["overfitting", "overfitting", "underfitting"]  # the focus first; no shift
    assert picked[0][2] == ["a=1", "reg.dropout=0.5"]
    assert overrides_of("torchrun --nproc-per-node=2 -m dlrun x=1 x=2 hydra.run.dir=/r y=3") == ["x=2", "y=3"]
    assert change_between(["a=1", "b=2"], ["a=1", "c=3"]) == {"c": "3", "b": "(removed)"}


@pytest.mark.slow
@pytest.mark.parametrize("start,budget", [
    (["optim.lr=1e-6", "trainer.max_epochs=5"], 3),  # underfitting: a learning rate far too small
    (["experiment=overfit_demo", "trainer.max_epochs=30"], 3),  # overfitting: wide MLP, 5% of the data, no reg
])
def test_the_loop_lowers_the_validation_error_of_a_planted_start_within_its_budget(tmp_path, start, budget):
    from dlrun.iterate import main

    main([*start, "report.plots=false", "trainer.tensorboard=false", f"iterate.budget={budget}",
          f"iterate.dir={tmp_path}"])
    result = json.loads((tmp_path / "iterate.json").read_text())
    steps = result["steps"]
    assert 2 <= len(steps) <= budget and steps[0]["verdicts"]
    best = steps[result["best_step"]]
    assert best["val_error"] < steps[0]["val_error"]
    assert all(len(s["vs_best"]["interval"]) == 2 for s in steps[1:])  # each compared sample by sample
    assert all((tmp_path / f"step_{s['index']}" / "report.json").is_file() for s in steps)  # normal run folders
    assert result["best_command"].startswith("dlrun ") and "step" not in result["best_command"]
    md = (tmp_path / "iterate.md").read_text()
    assert "never used to choose" in md and result["best_command"] in md


@pytest.mark.slow
def test_a_healthy_start_stops_after_one_run(tmp_path):
    from dlrun.iterate import main

    main(["report.plots=false", "trainer.tensorboard=false", "iterate.budget=4", f"iterate.dir={tmp_path}"])
    result = json.loads((tmp_path / "iterate.json").read_text())
    assert len(result["steps"]) == 1 and result["stopped"] == "no verdict fires on the best configuration"


def test_a_step_that_makes_validation_worse_is_reverted_and_the_next_ranked_action_is_tried(tmp_path, monkeypatch):
    import dlrun.iterate as iterate

    def report(val, test, *commands):
        return {"metrics": {"train": {"error": val - 0.01}, "val": {"error": val}, "test": {"error": test}},
                "decomposition": {"focus": "avoidable_bias"},
                "diagnosis": {"underfitting": {"detected": bool(commands), "severity": "severe", "actions": [
                    {"text": c, "command": f"dlrun {c}"} for c in commands]}}}

    outcomes = {(): report(0.5, 0.5, "optim.lr=0.1", "trainer.max_epochs=100"),
                ("optim.lr=0.1",): report(0.6, 0.1),  # worse on validation (better on test: must not matter)
                ("trainer.max_epochs=100",): report(0.2, 0.9)}
    seen = []

    def fake_step(index, overrides, launch, folder):
        seen.append(list(overrides))
        return 0, outcomes[tuple(overrides)]

    monkeypatch.setattr(iterate, "run_step", fake_step)
    result = iterate.loop({"budget": 5, "dir": None}, [], [], tmp_path, say=lambda *_: None)
    assert seen == [[], ["optim.lr=0.1"], ["trainer.max_epochs=100"]]  # from step 0 again after the revert
    assert [s["kept"] for s in result["steps"]] == [True, False, True] and result["best_step"] == 2
    assert result["steps"][2]["parent"] == 0 and result["stopped"] == "no verdict fires on the best configuration"


def test_the_notes_suggestions_are_tried_when_no_verdict_fires(tmp_path, monkeypatch):
    """A linear model that does better on validation, then more epochs for a validation loss still falling."""
    import dlrun.iterate as iterate

    def report(val, linear_action, longer=None):
        versus = {"fires": True, "action": {"text": "a linear model", "command": "dlrun x=1 'model.hidden=[]'"}} \
            if linear_action else {"fires": True}  # a linear network: nothing more to suggest
        still = {"action": {"text": "train longer", "command": f"dlrun {longer}"}} if longer else None
        return {"metrics": {"train": {"error": val}, "val": {"error": val}, "test": {"error": val}},
                "decomposition": {"focus": None}, "evidence": {"versus_linear": versus, "still_improving": still},
                "diagnosis": {"underfitting": {"detected": False, "severity": "none", "actions": []}}}

    outcomes = {("x=1",): report(12.5, True),
                ("x=1", "model.hidden=[]"): report(10.6, False, "x=1 'model.hidden=[]' trainer.max_epochs=100"),
                ("x=1", "model.hidden=[]", "trainer.max_epochs=100"): report(0.3, False)}
    seen = []

    def fake_step(index, overrides, launch, folder):
        seen.append(list(overrides))
        return 0, outcomes[tuple(overrides)]

    monkeypatch.setattr(iterate, "run_step", fake_step)
    result = iterate.loop({"budget": 5, "dir": None}, [], ["x=1"], tmp_path, say=lambda *_: None)
    assert seen == [["x=1"], ["x=1", "model.hidden=[]"], ["x=1", "model.hidden=[]", "trainer.max_epochs=100"]]
    assert result["best_step"] == 2
    assert [s["reason"] for s in result["steps"][1:]] == ["versus_linear: a linear model",
                                                         "still_improving: train longer"]
    assert result["stopped"] == "no verdict fires on the best configuration"


def test_each_step_is_compared_with_the_best_before_it_on_the_same_validation_samples(tmp_path, monkeypatch):
    import dlrun.iterate as iterate

    y = np.arange(300) % 10

    def step_with(wrong: int, *commands):
        """A fake run: the first `wrong` validation samples misclassified, its report and predictions.csv."""
        def write(run_dir):
            run_dir.mkdir(parents=True)
            pred = y.copy()
            pred[:wrong] = (y[:wrong] + 1) % 10
            lines = ["split,index,y_true,y_pred"] + [f"val,{i},{t},{p}" for i, (t, p) in enumerate(zip(y, pred))]
            (run_dir / "predictions.csv").write_text("\n".join(lines) + "\n")
            return {"run": {"task": "classification"},
                    "metrics": {split: {"error": wrong / 300, "error_interval": [0.0, 1.0]}
                                for split in ("train", "val", "test")},
                    "decomposition": {"focus": "avoidable_bias"},
                    "diagnosis": {"underfitting": {"detected": bool(commands), "severity": "severe", "actions": [
                        {"text": c, "command": f"dlrun {c}"} for c in commands]}}}
        return write

    outcomes = {(): step_with(60, "optim.lr=0.1", "trainer.max_epochs=100"),
                ("optim.lr=0.1",): step_with(58, "optim.lr=0.1 trainer.max_epochs=100"),  # 2 fewer errors: noise
                ("optim.lr=0.1", "trainer.max_epochs=100"): step_with(20)}  # 38 fewer: confirmed

    def fake_step(index, overrides, launch, folder):
        return 0, outcomes[tuple(overrides)](folder / f"step_{index}")

    monkeypatch.setattr(iterate, "run_step", fake_step)
    result = iterate.loop({"budget": 5, "dir": None}, [], [], tmp_path, say=lambda *_: None)
    steps = result["steps"]
    assert steps[0]["vs_best"] is None
    assert steps[1]["vs_best"]["step"] == 0 and steps[1]["vs_best"]["difference"] == pytest.approx(-2 / 300)
    assert steps[1]["vs_best"]["confirmed"] is None and steps[1]["kept"]  # lower, so kept; but not confirmed
    assert steps[2]["vs_best"]["step"] == 1 and steps[2]["vs_best"]["confirmed"] == "lower"
    assert result["best_vs_start"]["difference"] == pytest.approx(-40 / 300)
    md = iterate.render_markdown(result)
    assert "-0.7 pts [" in md and "vs step 0, within noise" in md and "vs step 1, lower (confirmed)" in md
    assert "Its validation error against the start: -13.3 pts [" in md


def test_two_runs_on_different_validation_samples_are_not_compared():
    from dlrun.report.predictions import compare

    before = {0: (1.0, 1.0), 1: (2.0, 2.0)}
    assert compare("classification", before, {0: (1.0, 1.0), 2: (2.0, 0.0)})["note"] == \
        "not the same validation samples"
    assert compare("classification", before, None)["note"] == "no predictions.csv to compare"
    assert compare("classification", before, {0: (1.0, 0.0), 1: (2.0, 2.0)})["difference"] == pytest.approx(0.5)


def test_a_step_stopped_by_ctrl_c_is_described_by_what_it_left(tmp_path):
    from dlrun.iterate import step_state

    assert step_state(tmp_path / "none") == "nothing saved yet"
    (tmp_path / "partial" / "checkpoints").mkdir(parents=True)
    (tmp_path / "partial" / "checkpoints" / "last.pt").write_bytes(b"")
    (tmp_path / "partial" / "report.json").write_text(json.dumps({"run": {"interrupted": True}}))
    assert step_state(tmp_path / "partial") == "its checkpoint and partial report"
    (tmp_path / "partial" / "report.json").write_text(json.dumps({"run": {"interrupted": False}}))
    assert step_state(tmp_path / "partial") == "its run had finished; its report is complete"


def test_ctrl_c_during_a_step_keeps_the_steps_before_it_and_exits_130(tmp_path, monkeypatch):
    import dlrun.iterate as iterate

    start = {"metrics": {"train": {"error": 0.4}, "val": {"error": 0.5}, "test": {"error": 0.5}},
             "decomposition": {"focus": "avoidable_bias"},
             "diagnosis": {"underfitting": {"detected": True, "severity": "severe",
                                            "actions": [{"text": "x", "command": "dlrun optim.lr=0.1"}]}}}

    def fake_step(index, overrides, launch, folder):
        if index == 1:
            raise KeyboardInterrupt  # the user's Ctrl-C while step 1 trains
        return 0, start

    monkeypatch.setattr(iterate, "run_step", fake_step)
    result = iterate.loop({"budget": 5, "dir": None}, [], [], tmp_path, say=lambda *_: None)
    assert result["interrupted"] and result["stopped"].startswith("stopped by Ctrl-C during step 1")
    assert "step_1: nothing saved yet)" in result["stopped"]  # the step left no folder: no claim of a checkpoint
    assert len(result["steps"]) == 1 and result["best_step"] == 0
    monkeypatch.setattr(iterate, "loop", lambda *a, **k: result)
    with pytest.raises(SystemExit) as done:
        iterate.main([f"iterate.dir={tmp_path}"])
    assert done.value.code == 130 and (tmp_path / "iterate.json").is_file() and (tmp_path / "iterate.md").is_file()

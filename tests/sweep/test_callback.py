"""The sweep summary: jobs sorted by validation error, verdicts per job, missing jobs named."""

from __future__ import annotations

import json

from dlrun.sweep.callback import summarize, write_summary


def _report(overrides, val, verdict="no"):
    finding = {"detected": verdict != "no", "severity": "none" if verdict == "no" else verdict}
    return {"run": {"overrides": overrides, "best_epoch": 3, "stop_reason": "patience"},
            "metrics": {"train": {"error": 0.0}, "val": {"error": val}, "test": {"error": None if val is None else val + 0.01}},
            "diagnosis": {"underfitting": finding, "overfitting": {"detected": False, "severity": "none"},
                          "distribution_shift": {"detected": False, "severity": "none"}}}


def test_jobs_are_sorted_by_validation_error():
    summary = summarize({"0": _report(["reg.dropout=0"], 0.05, "mild"), "1": _report(["reg.dropout=0.5"], 0.02),
                         "2": _report(["reg.dropout=0.9"], None)})
    assert [r["job"] for r in summary["jobs"]] == ["1", "0", "2"] and summary["best"] == "1"
    assert summary["jobs"][1]["verdicts"]["underfitting"] == "mild"


def test_write_summary_reads_every_job_folder(tmp_path):
    for i, val in enumerate([0.1, 0.03]):
        (tmp_path / str(i)).mkdir()
        (tmp_path / str(i) / "report.json").write_text(json.dumps(_report([f"reg.dropout={i}"], val)))
    (tmp_path / "2").mkdir()  # a job that failed before writing its report
    summary = write_summary(tmp_path)
    assert summary["best"] == "1" and summary["missing"] == ["2"]
    md = (tmp_path / "summary.md").read_text()
    assert md.index("reg.dropout=1") < md.index("reg.dropout=0") and "without a report.json" in md
    assert json.loads((tmp_path / "summary.json").read_text())["jobs"][0]["job"] == "1"


def test_failed_jobs_are_listed_with_their_overrides_error_and_status(tmp_path):
    from dlrun.sweep.callback import record_failure

    (tmp_path / "0").mkdir()
    (tmp_path / "0" / "report.json").write_text(json.dumps(_report(["reg.dropout=0"], 0.05)))
    record_failure(tmp_path / "1", ["reg.dropout=0.5", "trainer.resume=/x"], "trainer.resume='/x': no checkpoint",
                   2, "user error")
    summary = write_summary(tmp_path)
    assert [r["job"] for r in summary["jobs"]] == ["0"] and summary["missing"] == []
    assert summary["failed"] == [{"job": "1", "overrides": ["reg.dropout=0.5", "trainer.resume=/x"],
                                  "error": "trainer.resume='/x': no checkpoint", "exit_status": 2,
                                  "kind": "user error"}]
    md = (tmp_path / "summary.md").read_text()
    assert "## 1 failed job" in md and "| 1 | `reg.dropout=0.5 trainer.resume=/x` | 2 | trainer.resume='/x'" in md

"""Plots drawn in a helper process during a basic-launcher sweep: every file is written by the time shutdown()
returns, a failing figure is reported without losing the others, and without enable() nothing changes."""

from __future__ import annotations

import json
import shutil

import pytest

from dlrun.report import background


def test_submitted_work_is_done_by_shutdown_and_a_failure_loses_nothing_else(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    background.enable()
    try:
        assert background.enabled()
        background.submit(shutil.copyfile, str(tmp_path / "a.txt"), path=str(tmp_path / "b.txt"))
        background.submit(shutil.copyfile, str(tmp_path / "missing.txt"), path=str(tmp_path / "c.txt"))
        background.submit(shutil.copyfile, str(tmp_path / "a.txt"), path=str(tmp_path / "d.txt"))
        errors = background.wait()
    finally:
        background.shutdown()
    assert not background.enabled()
    assert (tmp_path / "b.txt").read_text() == "a" and (tmp_path / "d.txt").read_text() == "a"
    assert len(errors) == 1 and "missing.txt" in errors[0] and "FileNotFoundError" in errors[0]


def _write_pid_after(seconds: float, path) -> None:
    import os
    import time
    from pathlib import Path

    time.sleep(seconds)
    Path(path).write_text(str(os.getpid()))


def test_a_helper_that_falls_behind_leaves_the_next_report_to_this_process(tmp_path):
    """Drawing that costs more than training would pile up in the helper's queue (the sweep then waits for it at
    the end): with MAX_BEHIND reports in hand, the next one is drawn here, and the queue stays short."""
    import os

    background.enable()
    try:
        for name in "abc":  # the helper takes a, b waits in its queue, c is drawn here
            background.submit(_write_pid_after, 1.5, path=tmp_path / name)
        here = (tmp_path / "c").read_text()  # written before submit returned
    finally:
        background.shutdown()
    assert here == str(os.getpid()) and (tmp_path / "a").read_text() != here and (tmp_path / "b").read_text() != here


def _write_pid_unless_in_helper(parent_pid: int, path) -> None:
    """Kills the helper process it runs in (as the OOM killer would); in the sweep's own process, writes its pid."""
    import os
    import signal
    from pathlib import Path

    if os.getpid() != parent_pid:
        os.kill(os.getpid(), signal.SIGKILL)
    Path(path).write_text(str(os.getpid()))


def test_a_helper_that_dies_costs_no_report_and_no_job(tmp_path):
    import os
    import time

    background.enable()
    try:
        background.submit(_write_pid_unless_in_helper, os.getpid(), path=tmp_path / "a")
        time.sleep(2)  # the helper is dead by now
        background.submit(_write_pid_unless_in_helper, os.getpid(), path=tmp_path / "b")  # must not raise
        assert (tmp_path / "b").read_text() == str(os.getpid())  # drawn here at once: the helper is known dead
        assert not background.enabled()
        errors = background.wait()
    finally:
        background.shutdown()
    assert errors == [] and (tmp_path / "a").read_text() == str(os.getpid())  # redrawn here by wait()


def _terminate_self_then_write_pid(path) -> None:
    import os
    import signal
    import time
    from pathlib import Path

    os.kill(os.getpid(), signal.SIGTERM)  # what `timeout`, `kill -TERM -PGID` or Slurm send to every process
    time.sleep(0.2)
    Path(path).write_text(str(os.getpid()))


def test_the_helper_leaves_sigterm_to_the_sweep_and_finishes_its_queue(tmp_path):
    import os

    background.enable()
    try:
        background.submit(_terminate_self_then_write_pid, path=tmp_path / "a")
        errors = background.wait()
        assert background.enabled()  # the helper lived on
    finally:
        background.shutdown()
    assert errors == [] and (tmp_path / "a").read_text() != str(os.getpid())  # drawn by the helper


def test_without_enable_submit_runs_at_once(tmp_path):
    (tmp_path / "a.txt").write_text("a")
    background.submit(shutil.copyfile, str(tmp_path / "a.txt"), path=str(tmp_path / "b.txt"))
    assert (tmp_path / "b.txt").read_text() == "a"


@pytest.mark.slow
def test_a_basic_launcher_sweep_writes_every_plot_and_report_html_before_its_summary(tmp_path):
    from tests.conftest import run_dlrun

    sweep = tmp_path / "sweep"
    done = run_dlrun(["-m", "trainer.seed=0,1", "trainer.max_epochs=2", "trainer.progress=false",
                      "model.hidden=[16]", f"hydra.sweep.dir={sweep}"], tmp_path)
    assert done.returncode == 0, done.stderr
    summary_time = (sweep / "summary.json").stat().st_mtime_ns
    for job in ("0", "1"):
        report = json.loads((sweep / job / "report.json").read_text())
        assert report["files"]["plots"] and all((sweep / job / "plots" / f"{name}.png").is_file()
                                                for name in report["files"]["plots"])
        html = sweep / job / "report.html"
        assert html.stat().st_mtime_ns <= summary_time and html.read_text().count("data:image/png;base64,") >= 5

"""The one timing helper every benchmark uses, for a shared machine.

`stopwatch()` times one run: it waits behind the QuietGate until other processes are quiet, then times the run
with time.perf_counter. `measure()` is the median of repeats after warm-up, built on it. `run_command()` runs a
subprocess the way the benchmarks time it. The rest summarises what they measure: `spread` (median, min-max over
repeats), `paired_ratio`, `interleaved` (the order that spreads a machine's drift over every contender).
"""

from __future__ import annotations

import contextlib
import os
import statistics
import subprocess
import time
from pathlib import Path
from typing import Callable

# ----------------------------------------------------------------------------------------------------------------------
# statistics over repeats


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


# ----------------------------------------------------------------------------------------------------------------------
# waiting for a quiet machine


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
# timing a run


class Stopwatch:
    seconds: float = float("nan")  # set when the `with stopwatch()` block ends


@contextlib.contextmanager
def stopwatch():
    """`with stopwatch() as watch: work()`, then watch.seconds: the work's perf_counter wall clock, started once
    the machine is quiet (GATE), stopped before the gate's closing snapshot."""
    watch = Stopwatch()
    with GATE:
        t0 = time.perf_counter()
        try:
            yield watch
        finally:
            watch.seconds = time.perf_counter() - t0


def measure(fn: Callable[[int], object], repeats: int, warmup: int = 0) -> tuple[dict, list]:
    """Call fn(i) for i = 0, 1, ...: `warmup` untimed calls, then `repeats` timed ones (each behind the gate).
    Returns (spread of the timed calls' seconds, their return values); i lets each call use its own folder."""
    for i in range(warmup):
        fn(i)
    walls, values = [], []
    for i in range(warmup, warmup + repeats):
        with stopwatch() as watch:
            values.append(fn(i))
        walls.append(watch.seconds)
    return spread(walls), values


def run_command(args: list[str], cwd: Path, timeout: float = 900) -> subprocess.CompletedProcess:
    """Run a command to the end, output captured; raise with its stderr's tail when it fails."""
    env = {k: v for k, v in os.environ.items() if k != "HYDRA_FULL_ERROR"}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, args))} exited {proc.returncode}:\n{proc.stderr[-2000:]}")
    return proc

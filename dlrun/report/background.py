"""Draw the report's plots in a helper process while the next job of a sweep trains.

Drawing the five PNGs of a report takes about a second of matplotlib, more than training a small default run. In a
sweep on Hydra's basic launcher (jobs one after another in one process) that second is overlapped with the next
job: cli.py calls `enable()`, `render.render` hands the plots and report.html to `submit()` (report.json and
report.md are written at once), and the sweep callback calls `shutdown()` before it writes the summary, so every
report is complete when the sweep returns (and at exit: the pool finishes its queue). Everywhere else
(a single run, joblib and Slurm jobs in their own processes) `submit()` draws at once, as before.

When drawing a report takes longer than training the next job (a default digits run trains in 0.35 s, its six
figures take 0.7 s), the helper falls behind; once it has MAX_BEHIND reports in hand the next one is drawn in this
process instead, so both cores stay busy and the wait at the end of the sweep stays one report long
(benchmarks/RESULTS.md, "The marginal cost of a sweep job").

The helper is one spawned process (fork after torch has started its thread pools can deadlock), at a lower
priority than training, with one BLAS thread.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

log = logging.getLogger(__name__)

_pool = None  # concurrent.futures.ProcessPoolExecutor when enabled
_pending: list = []  # (future, path) of figures not yet drawn
MAX_BEHIND = 2  # reports the helper may have in hand before the next one is drawn here


def _init_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the sweep's to answer; the queue is finished
    os.environ["OMP_NUM_THREADS"] = os.environ["OPENBLAS_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = "1"
    os.environ.setdefault("MPLBACKEND", "Agg")
    try:
        os.nice(5)  # training first: a plot may wait, a job's epochs should not
    except (AttributeError, OSError):
        pass


def enable() -> None:
    """Draw from now on in a helper process (idempotent)."""
    global _pool
    if _pool is None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        _pool = ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn"),
                                    initializer=_init_worker)


def enabled() -> bool:
    return _pool is not None


def submit(draw: Callable[..., Any], *args: Any, path: Any) -> Any:
    """draw(*args, path) in the helper process when enabled and keeping up, else here and now; returns the path the
    file will have. A helper still busy with an earlier report means drawing costs more than training here: this
    one is drawn in this process, so that the queue (and the wait at the end of the sweep) does not grow with it."""
    if _pool is None or sum(not future.done() for future, _ in _pending) >= MAX_BEHIND:
        return draw(*args, path)
    _pending.append((_pool.submit(draw, *args, path), path))
    return path


def wait() -> list[str]:
    """Block until every submitted figure is drawn; returns the errors (a figure that failed is logged, not
    raised: the rest of the report stands without it)."""
    errors = []
    while _pending:
        future, path = _pending.pop(0)
        try:
            future.result()
        except Exception as err:  # noqa: BLE001 - one figure's failure must not lose the others
            errors.append(f"{path}: {type(err).__name__}: {err}")
            log.error("could not draw %s: %s", path, err)
    return errors


def shutdown() -> None:
    """Wait for the pending figures, then stop the helper process."""
    global _pool
    wait()
    if _pool is not None:
        _pool.shutdown()
        _pool = None

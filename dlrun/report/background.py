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
priority than training, with one BLAS thread. It ignores SIGINT and SIGTERM, which reach every process of the
group (Ctrl-C, `timeout`, Slurm): the sweep answers them and finishes the helper's queue before it exits. A helper
that dies anyway (killed, out of memory) costs no report: its unfinished reports are drawn in this process, and
the rest of the sweep draws here too.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable

log = logging.getLogger(__name__)

_pool = None  # concurrent.futures.ProcessPoolExecutor when enabled
_pending: list = []  # (future, draw, args, path) of reports the helper has not finished
MAX_BEHIND = 2  # reports the helper may have in hand before the next one is drawn here


def _init_worker() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C and SIGTERM are the sweep's to answer: it finishes the
    signal.signal(signal.SIGTERM, signal.SIG_IGN)  # queue, then stops the helper
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
    from concurrent.futures.process import BrokenProcessPool

    if _pool is None or sum(not entry[0].done() for entry in _pending) >= MAX_BEHIND:
        return draw(*args, path)
    try:
        _pending.append((_pool.submit(draw, *args, path), draw, args, path))
    except (BrokenProcessPool, RuntimeError) as err:  # the helper died (RuntimeError: a pool shut down)
        _helper_lost(err)
        return draw(*args, path)
    return path


def _helper_lost(err: BaseException) -> None:
    """The helper process is gone: draw here from now on (its pending reports are redrawn by wait())."""
    global _pool
    if _pool is not None:
        log.warning("the plot helper process stopped (%s): drawing the reports in this process from now on", err)
        _pool.shutdown(wait=False, cancel_futures=True)
        _pool = None


def wait() -> list[str]:
    """Block until every submitted report is drawn; returns the errors (a figure that failed is logged, not
    raised: the rest of the report stands without it). Reports a dead helper left are drawn here."""
    from concurrent.futures import CancelledError
    from concurrent.futures.process import BrokenProcessPool

    errors = []
    while _pending:
        future, draw, args, path = _pending.pop(0)
        try:
            try:
                future.result()
            except (BrokenProcessPool, CancelledError) as err:  # cancelled: the queue of a helper found dead
                _helper_lost(err)
                draw(*args, path)
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

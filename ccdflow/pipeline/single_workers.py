"""Single frames (`ccdflow reduce`) reduced side by side in forked worker processes.

One frame is ~0.1 s of numpy on one core (plus its QA), so frames, not steps, are what runs in
parallel, as in the night. The process driving the run keeps everything a serial run decides
or records: it chooses every frame's calibrations (the caldb's gates and receipts, the masters
loaded once), then forks the workers, which inherit the plan, the loaded masters and the
imports (no pickling of masters, no second start-up: a spawned worker would import ccdflow and
read every master again, ~1.5 s each). A worker reads, reduces and writes its frame and returns
small results; the driver takes them in the files' order, writes the ledger rows, the log lines
and the entries as a serial run does, so the products, product ids and summaries are the same.

The driver reacts to SIGINT/SIGTERM (:func:`ccdflow.cli.signals_interrupt`); workers ignore
SIGINT (Ctrl-C reaches the whole process group) and are stopped by the driver with SIGTERM,
which unwinds a frame being written (its temporary file removed) and ends the worker.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import sys
import time
from collections.abc import Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.pipeline.single import Chosen, Setup, frame_entry, make_product

log = logging.getLogger("ccdflow.reduce")


@dataclass
class Planned:
    """One frame to reduce: its metadata, product name and path, and its calibrations (or the
    error choosing them raised)."""

    meta: FrameMeta
    rel: str
    out: Path
    chosen: Chosen


#: The run's setup and plan, set before the workers fork: they read it from their copy.
_SETUP: Setup | None = None
_PLAN: list[Planned] = []
#: A worker is writing a frame: SIGTERM unwinds it (temporary file removed) rather than ending it.
_BUSY = False
#: Which frames a worker has started (shared memory): those a dead worker was reducing.
_STARTED: Any = None


def can_fork() -> bool:
    """Whether worker processes can be forked here (not on Windows; macOS allows it)."""
    return "fork" in multiprocessing.get_all_start_methods()


def default_workers(n_files: int) -> int:
    """One worker per core this process may use, at most one per file."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, n_files))


#: How many times a frame may be running in a worker that died (killed, out of memory) before
#: it is reported as failed: the frame that killed it and the one beside it cannot be told apart.
ATTEMPTS = 2


class FramePool:
    """The workers of one run: every planned frame is submitted at once (the fork happens
    here, before the caller starts its progress bar thread); :meth:`results` yields them in
    the plan's order. A worker that dies breaks the pool: a pool of one worker takes the frames
    not done, one at a time (so a frame that kills its worker is told from the one beside it,
    and a worker short of memory has it all), and a frame that was running in dead workers
    :data:`ATTEMPTS` times fails by itself."""

    def __init__(self, setup: Setup, plan: list[Planned], workers: int) -> None:
        global _SETUP, _PLAN, _STARTED
        _SETUP, _PLAN = setup, plan
        _STARTED = multiprocessing.RawArray("b", len(plan))  # shared with the forked workers
        _preload()
        self.attempts = [0] * len(plan)
        self.pools: list[ProcessPoolExecutor] = []
        self.futures: list[Future[dict[str, Any]] | None] = [None] * len(plan)
        self._submit(list(range(len(plan))), workers)

    def _submit(self, indices: list[int], workers: int) -> None:
        pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                   initializer=_worker_started)
        self.pools.append(pool)
        for i in indices:
            _STARTED[i] = 0
            self.futures[i] = pool.submit(_reduce_planned, i)

    def results(self) -> Iterator[dict[str, Any] | Exception]:
        """Each frame's results in the plan's order (a frame lost with dead workers: its failed
        entry, as the night's :mod:`~ccdflow.pipeline.lost`), or the exception a serial run
        would have raised out of the frame (a fatal error)."""
        for i, future in enumerate(self.futures):
            while True:
                assert future is not None
                try:
                    yield future.result()
                except BrokenProcessPool as exc:
                    if self._restarted(i):
                        future = self.futures[i]
                        continue
                    yield {"failed": _lost(_PLAN[i], exc), "log": []}
                except Exception as exc:
                    yield exc
                break

    def _restarted(self, first: int) -> bool:
        """After a worker died: a pool of one worker for the frames from ``first`` on that are
        not done. False when frame ``first`` has used its attempts (it fails; the others go on)."""
        self.pools[-1].shutdown(wait=True)  # every future of the broken pool is settled now
        again = []
        for i in range(first, len(self.futures)):
            future = self.futures[i]
            if future is None or not isinstance(future.exception(), BrokenProcessPool):
                continue
            self.attempts[i] += bool(_STARTED[i])
            if self.attempts[i] < ATTEMPTS:
                again.append(i)
        log.warning("a worker process died (killed, or out of memory?); %d frame(s) started again, "
                    "one at a time", len(again))
        if again:
            self._submit(again, 1)
        return first in again

    def close(self, interrupted: bool) -> None:
        """Wait for the workers to end; interrupted, stop them first (SIGTERM: a frame being
        written is unwound and its temporary file removed)."""
        global _SETUP, _PLAN
        for pool in self.pools:
            processes = list((getattr(pool, "_processes", None) or {}).values())
            if interrupted:
                pool.shutdown(wait=False, cancel_futures=True)
                for process in processes:
                    if process.is_alive():
                        process.terminate()
                for process in processes:
                    process.join(timeout=30)
            pool.shutdown(wait=True, cancel_futures=True)
        _SETUP, _PLAN = None, []

    def __enter__(self) -> FramePool:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        self.close(interrupted=kind is not None)


def _lost(item: Planned, exc: BaseException) -> dict[str, Any]:
    """The failed entry of a frame that was running each time a worker died."""
    from ccdflow.pipeline.tasks import one_line

    reason = (f"the worker process reducing it died, {ATTEMPTS} times ({type(exc).__name__}: "
              f"{one_line(str(exc))}); this input crashes the process that reads it or needs more "
              "memory than a worker has")
    return {**frame_entry(item.meta, item.rel), "status": "failed", "error": "WorkerDiedError",
            "reason": reason, "seconds": 0.0}


def _preload() -> None:
    """Import and load, once before the fork, what every worker's first frame would import and
    load itself (the same wall time when each worker has a core, less CPU when it has not)."""
    from ccdflow.framework.builders import frame_qa  # noqa: F401
    from ccdflow.framework.numerics import kernels

    kernels.warm_up()


def _worker_started() -> None:
    """A worker's signals: SIGINT ignored (the driver decides), SIGTERM ends it, unwinding the
    frame it is writing. Its ``ccdflow`` log records are kept per frame and handed to the
    driver with the result, which logs them where and when a serial run would have."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, _terminated)
    logger = logging.getLogger("ccdflow")
    logger.handlers = [_Kept()]
    logger.propagate = False


def _terminated(signum: int, _frame: Any) -> None:
    if _BUSY:
        raise KeyboardInterrupt(signum)  # unwinds through the writer's clean-up
    os._exit(128 + signum)


class _Kept(logging.Handler):
    """Keeps a worker's records (message formatted, so they pickle) for the driver."""

    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        record.msg, record.args = record.getMessage(), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        self.records.append(record)


def _reduce_planned(index: int) -> dict[str, Any]:
    """Worker: reduce frame ``index`` of the plan. Returns its results, or its failed entry
    (:func:`ccdflow.pipeline.tasks.failed`, which raises a fatal error: it stops the run)."""
    global _BUSY
    from ccdflow.pipeline.tasks import failed

    assert _SETUP is not None
    item = _PLAN[index]
    kept = next(h for h in logging.getLogger("ccdflow").handlers if isinstance(h, _Kept))
    kept.records = []
    start = time.perf_counter()
    _STARTED[index] = 1
    _BUSY = True
    try:
        done, _, raw_sha, _ = make_product(_SETUP, item.meta.file, item.out, item.chosen)
        return {"meta": done.meta, "sha256": done.sha256, "raw_sha256": raw_sha,
                "seconds": time.perf_counter() - start, "log": kept.records}
    except Exception as exc:
        return {"failed": failed(frame_entry(item.meta, item.rel), exc, start), "log": kept.records}
    except KeyboardInterrupt:  # SIGTERM from the driver: the frame's temporary file is gone
        sys.stdout.flush()
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY = False

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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.pipeline.single import Chosen, Setup, make_product


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


def can_fork() -> bool:
    """Whether worker processes can be forked here (not on Windows; macOS allows it)."""
    return "fork" in multiprocessing.get_all_start_methods()


def default_workers(n_files: int) -> int:
    """One worker per core this process may use, at most one per file."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, n_files))


class FramePool:
    """The workers of one run: every planned frame is submitted at once (the fork happens
    here, before the caller starts its progress bar thread); :meth:`results` yields them in
    the plan's order."""

    def __init__(self, setup: Setup, plan: list[Planned], workers: int) -> None:
        global _SETUP, _PLAN
        _SETUP, _PLAN = setup, plan
        _preload()
        self.pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"),
                                        initializer=_worker_started)
        self.futures: list[Future[dict[str, Any]]] = [self.pool.submit(_reduce_planned, i)
                                                      for i in range(len(plan))]

    def results(self) -> Iterator[Future[dict[str, Any]]]:
        """Each frame's future, in the plan's order (its ``result()`` raises what a serial run
        would have raised out of the frame: a fatal error, or the pool's own failure)."""
        yield from self.futures

    def close(self, interrupted: bool) -> None:
        """Wait for the workers to end; interrupted, stop them first (SIGTERM: a frame being
        written is unwound and its temporary file removed)."""
        global _SETUP, _PLAN
        processes = list((getattr(self.pool, "_processes", None) or {}).values())
        if interrupted:
            self.pool.shutdown(wait=False, cancel_futures=True)
            for process in processes:
                if process.is_alive():
                    process.terminate()
            for process in processes:
                process.join(timeout=30)
        self.pool.shutdown(wait=True, cancel_futures=True)
        _SETUP, _PLAN = None, []

    def __enter__(self) -> FramePool:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        self.close(interrupted=kind is not None)


def _preload() -> None:
    """Import, once before the fork, what every worker's first frame would import itself."""
    from ccdflow.framework.builders import frame_qa  # noqa: F401
    from ccdflow.framework.numerics import kernels  # noqa: F401


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
    _BUSY = True
    try:
        done, _, raw_sha, _ = make_product(_SETUP, item.meta.file, item.out, item.chosen)
        return {"meta": done.meta, "sha256": done.sha256, "raw_sha256": raw_sha,
                "seconds": time.perf_counter() - start, "log": kept.records}
    except Exception as exc:
        entry = {"raw": item.meta.path, "product": item.rel, "frame_type": item.meta.frame_type}
        return {"failed": failed(entry, exc, start), "log": kept.records}
    except KeyboardInterrupt:  # SIGTERM from the driver: the frame's temporary file is gone
        sys.stdout.flush()
        os._exit(128 + signal.SIGTERM)
    finally:
        _BUSY = False

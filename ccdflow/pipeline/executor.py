"""Where a night's tasks run: in this process, on a LocalCluster of worker processes, or on an
existing Dask cluster. Every executor yields results as tasks finish (for progress bars)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any


class SerialExecutor:
    """Run tasks one after another in this process (the reference for bit-for-bit checks)."""

    description = "serial"

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[tuple]) -> Iterator[Any]:
        for args in items:
            yield fn(*args)

    def close(self) -> None:
        pass

    def __enter__(self) -> SerialExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


#: Loggers of Dask that speak during a normal start and stop.
_DASK_LOGGERS = ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                 "distributed.core", "distributed.http.proxy", "distributed.client",
                 "distributed.batched", "distributed.comm", "distributed.utils")


class DaskExecutor:
    """Tasks on Dask workers, one thread each (steps stay single-threaded inside a worker).

    ``scheduler`` is the address of an existing cluster (any kind: dask-jobqueue, a scheduler and
    workers started by hand...); otherwise a LocalCluster of ``workers`` processes is started,
    listening on loopback only, without a dashboard unless ``dashboard`` gives its address.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None,
                 dashboard: str | None = None) -> None:
        import logging

        from distributed import Client

        # Dask's own INFO chatter would drown the progress bar; warnings still show.
        for name in _DASK_LOGGERS:
            logging.getLogger(name).setLevel(logging.WARNING)
        self.cluster: Any = None
        self.client: Any = None
        try:
            if scheduler:
                self.client = Client(scheduler, timeout="30s")
                self.description = f"dask scheduler {scheduler}"
            else:
                n = workers or os.cpu_count() or 1
                with _signals_deferred():
                    with _sigint_blocked():
                        self.cluster = _local_cluster(n, dashboard)
                    self.client = Client(self.cluster)
                self.description = f"dask LocalCluster, {n} worker process(es)"
        except BaseException:  # e.g. Ctrl-C while the cluster starts: leave no worker behind
            self.close(interrupted=True)
            raise

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[tuple]) -> Iterator[Any]:
        from distributed import as_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in items]
        for future in as_completed(futures):
            yield future.result()
            future.release()

    def close(self, interrupted: bool = False) -> None:
        """Close the client and the LocalCluster. After an interruption, tasks still running
        are cancelled and the workers killed: Dask's complaints about that are expected and
        silenced (errors only), so the interruption reads as one line."""
        import logging

        if interrupted:
            for name in _DASK_LOGGERS:
                logging.getLogger(name).setLevel(logging.CRITICAL)
        if self.cluster is not None and self.client is not None and not interrupted:
            _workers_closed_first(self.cluster)
        if self.client is not None:
            self.client.close()
        if self.cluster is not None:
            self.cluster.close(timeout=10 if interrupted else None)

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, kind: type | None, *exc: object) -> None:
        self.close(interrupted=kind is not None)


def _workers_closed_first(cluster: Any, timeout: float = 10.0) -> None:
    """Close a LocalCluster's workers before its scheduler. Closed together, a worker whose
    heartbeat is in flight when the scheduler goes logs 'Failed to communicate with scheduler
    during heartbeat' with a traceback on the user's console (seen under load on a re-run)."""
    import time

    try:
        cluster.scale(0)
        deadline = time.monotonic() + timeout
        while cluster.workers and time.monotonic() < deadline:
            time.sleep(0.02)
    except Exception as exc:  # closing must go on: cluster.close() below does the rest
        logging.getLogger("ccdflow.night").debug("workers not closed first: %s", exc)


def _local_cluster(n: int, dashboard: str | None) -> Any:
    """A LocalCluster of ``n`` single-threaded worker processes bound to 127.0.0.1.

    The scheduler always serves HTTP (health and metrics, and the dashboard when bokeh is
    installed): on 127.0.0.1 at a free port unless ``dashboard`` says where (a bare ``:PORT`` is
    taken as 127.0.0.1:PORT, where Dask would listen on every interface). Worker processes
    log only what is critical: their warnings and errors are about their own housekeeping and
    connections (every task they were running when a run is interrupted; a heartbeat that meets
    a closing scheduler, printed with its traceback on the user's console under load); the
    failures that matter come back in the tasks' results.
    """
    import logging

    from distributed import LocalCluster

    address = "127.0.0.1:0" if dashboard is None else (
        f"127.0.0.1{dashboard}" if dashboard.startswith(":") else dashboard)
    return LocalCluster(n_workers=n, threads_per_worker=1, processes=True, host="127.0.0.1",
                        dashboard_address=address, silence_logs=logging.CRITICAL)


@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """SIGINT blocked in this thread, hence in the threads Dask starts meanwhile and in the
    worker processes they start (a blocked signal stays blocked across fork and exec).

    Ctrl-C at a terminal reaches every process of the foreground group: workers that take it
    print KeyboardInterrupt tracebacks while this process is already closing them in order. A
    Ctrl-C meanwhile waits, and arrives in this thread when the block ends.
    """
    main = threading.current_thread() is threading.main_thread()
    if main:
        # multiprocessing starts its resource tracker with the first worker and then unblocks
        # SIGINT in the starting thread (one of Dask's): start it now, while nothing is blocked.
        from multiprocessing import resource_tracker

        resource_tracker.ensure_running()
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        if main:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def _signals_deferred() -> Iterator[None]:
    """SIGINT and SIGTERM received meanwhile are handled at the end of the block, by the handlers
    in place before it: a LocalCluster interrupted half-way through its start cannot be closed
    (Dask asserts on workers still starting), one that has started can."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    sigs = (signal.SIGINT, signal.SIGTERM)
    previous = {s: signal.signal(s, lambda signum, _frame: received.append(signum)) for s in sigs}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        for signum in dict.fromkeys(received):
            old = previous[signal.Signals(signum)]
            if callable(old):
                old(signum, None)
            elif old == signal.SIG_DFL:
                os.kill(os.getpid(), signum)


def make_executor(workers: int | None, scheduler: str | None,
                  dashboard: str | None = None) -> SerialExecutor | DaskExecutor:
    """``--workers 1`` (or 0) runs serially in this process; more uses Dask. ``dashboard``:
    the LocalCluster's dashboard address (default 127.0.0.1 at a free port)."""
    if scheduler or (workers is not None and workers > 1) or workers is None:
        if not scheduler and (workers or os.cpu_count() or 1) <= 1:
            return SerialExecutor()
        return DaskExecutor(workers, scheduler, dashboard)
    return SerialExecutor()

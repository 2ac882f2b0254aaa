"""Where a night's tasks run: in this process, on a LocalCluster of worker processes, or on an
existing Dask cluster. Every executor yields results as tasks finish (for progress bars)."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
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


class DaskExecutor:
    """Tasks on Dask workers, one thread each (steps stay single-threaded inside a worker).

    ``scheduler`` is the address of an existing cluster (any kind: dask-jobqueue, a scheduler and
    workers started by hand...); otherwise a LocalCluster of ``workers`` processes is started.
    """

    def __init__(self, workers: int | None = None, scheduler: str | None = None) -> None:
        import logging

        from distributed import Client, LocalCluster

        # Dask's own INFO chatter would drown the progress bar; warnings still show.
        for name in ("distributed", "distributed.scheduler", "distributed.nanny", "distributed.worker",
                     "distributed.core", "distributed.http.proxy"):
            logging.getLogger(name).setLevel(logging.WARNING)
        if scheduler:
            self.cluster = None
            self.client = Client(scheduler, timeout="30s")
            self.description = f"dask scheduler {scheduler}"
        else:
            n = workers or os.cpu_count() or 1
            self.cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True,
                                        dashboard_address=":0", silence_logs=logging.WARNING)
            self.client = Client(self.cluster)
            self.description = f"dask LocalCluster, {n} worker process(es)"

    def map_unordered(self, fn: Callable[..., Any], items: Iterable[tuple]) -> Iterator[Any]:
        from distributed import as_completed

        futures = [self.client.submit(fn, *args, pure=False) for args in items]
        for future in as_completed(futures):
            yield future.result()
            future.release()

    def close(self) -> None:
        self.client.close()
        if self.cluster is not None:
            self.cluster.close()

    def __enter__(self) -> DaskExecutor:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def make_executor(workers: int | None, scheduler: str | None) -> SerialExecutor | DaskExecutor:
    """``--workers 1`` (or 0) runs serially in this process; more uses Dask."""
    if scheduler or (workers is not None and workers > 1) or workers is None:
        if not scheduler and (workers or os.cpu_count() or 1) <= 1:
            return SerialExecutor()
        return DaskExecutor(workers, scheduler)
    return SerialExecutor()

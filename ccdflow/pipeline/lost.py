"""A task whose worker process died: the frame or master it was doing is reported failed and
the night goes on. A task never raises for a bad frame, but a frame can still kill the process
that reduces it (a C library crashing on a malformed file, the kernel's out-of-memory killer):
Dask then retries it on other workers and finally gives up with ``KilledWorker``. Without this,
that one frame would stop the night with Dask's traceback."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def lost_result(fn: Callable[..., Any], args: tuple, exc: BaseException) -> Any:
    """The result ``fn(*args)`` stands for when no worker could run it: the task's own entry,
    failed with ``WorkerDiedError``; anything but the night's four tasks re-raises ``exc``."""
    from ccdflow.pipeline import tasks

    reason = (f"the worker process running it died, on every retry ({type(exc).__name__}: "
              f"{tasks.one_line(str(exc))}); this input crashes the process that reads it or "
              "needs more memory than a worker has")
    failure = {"status": "failed", "error": "WorkerDiedError", "reason": reason, "seconds": 0.0}
    if fn is tasks.science_task:
        spec, meta, product = args
        return {"raw": str(meta.path), "product": product, "path": str(spec.reduced_dir / product),
                "filter": meta.filter, "exposure_time": meta.exposure_time, **failure}
    if fn is tasks.master_task:
        _, kind, group, metas = args
        return {"type": kind, "name": f"{group}.fits", "group": group, "n": len(metas),
                "inputs": [str(m.path) for m in metas], **failure}
    if fn is tasks.bpm_task:
        _, group, dark, flat, _ = args
        return {"type": "bpm", "name": f"{group}.fits", "group": group, "n": 2,
                "inputs": [dark["path"], flat["path"]], **failure}
    if fn is tasks.scan_chunk:
        _, paths = args
        return {"frames": [], "unknown": [(str(p), reason) for p in paths]}
    raise exc

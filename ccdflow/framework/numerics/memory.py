"""Keep freed memory inside a process that reduces frame after frame.

A frame's reduction allocates and frees the same large arrays again and again (astroscrappy
alone allocates ~160 MiB of temporaries per 2048x2048 frame). glibc hands arrays above its mmap
threshold back to the kernel on free, so the next frame takes every page again as a fresh page
fault: zeroed by the kernel, and on a VM often first-touched in the host too (measured here at
0.1-0.4 s of system time per astroscrappy call, 5-8 % of its wall time). Raising glibc's mmap
and trim thresholds keeps freed arrays in the heap for the next frame: the process keeps its
peak, which a worker reaches on every frame anyway.

Only the night pipeline's processes (driver and Dask workers) call this; a library user's
process is left as it is. ``CCDFLOW_RETAIN_MEMORY=0`` turns it off.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
import os
import sys

#: glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
#: Arrays up to this size are kept: a 4096x4096 float64 plane is 128 MiB.
RETAIN_BYTES = 1 << 30

@functools.cache
def retain_freed_memory() -> bool:
    """Ask glibc to keep freed arrays for reuse; True when it is in effect (once per process)."""
    if os.environ.get("CCDFLOW_RETAIN_MEMORY", "1") == "0":
        return False
    return _set_thresholds(RETAIN_BYTES)


#: ``ccdflow master``'s threshold: arrays this large and above go back to the kernel when freed.
RELEASE_BYTES = 4 << 20


@functools.cache
def release_freed_memory() -> bool:
    """The opposite, for a process that builds one product and exits (``ccdflow master``): a
    fixed mmap threshold, so freed frames go back to the kernel at once. glibc's own threshold
    grows to 32 MiB after the first large free, after which each preprocessing thread keeps the
    frames it freed in its own arena; measured on a 10-flat 2k master: peak RSS 870 -> 645 MiB,
    same wall time (the faults cost little against reading and hashing the inputs)."""
    return _set_thresholds(RELEASE_BYTES, trim=False)


def _set_thresholds(nbytes: int, trim: bool = True) -> bool:
    if not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (musl has no mallopt): nothing to tune
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, nbytes))
    return mmap_set and (not trim or bool(mallopt(_M_TRIM_THRESHOLD, nbytes)))

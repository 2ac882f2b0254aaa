"""How the ``ccdflow`` command runs its process: BLAS on one thread (the command's own process
only, never a program or notebook that imports ccdflow) and the cyclic collector paused while a
master is built (then restored, wherever ``main()`` runs).

Both were measured on a 20-flat 2048x2048 ``ccdflow master flat`` on 2 cores (bench_vs_siril's
task; interleaved runs, medians):

- **BLAS on one thread.** numpy and scipy each load an OpenBLAS whose threads spin on every core
  while they wait for work: 5.7 % of the run's CPU samples, although ccdflow's only linear algebra
  is on matrices a few elements wide (fits, star shapes). One thread each: 0.2 s less CPU.
- **The cyclic collector paused while a master is built.** The command's imports and the
  inputs' headers allocate many small objects, and the collector, triggered by the allocations,
  walks them again and again for the few cycles there are: the whole build leaves 253
  unreachable objects (header cards, no array). Paused from the imports to the master's write:
  ~0.1 s less CPU (user 2.21 -> 2.09 s, medians of 8 interleaved runs).
"""

from __future__ import annotations

import gc
import os
from collections.abc import Iterator, MutableMapping
from contextlib import contextmanager

#: The thread-count variables of the BLAS libraries numpy and scipy ship with (OpenBLAS), and of
#: the ones a source build may use; a value the user set is kept.
BLAS_THREAD_VARIABLES = ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "BLIS_NUM_THREADS")


def single_threaded_blas(environ: MutableMapping[str, str] = os.environ) -> None:
    """One BLAS thread unless the user chose otherwise. It must run before numpy is imported
    (the libraries read it when loaded); the processes a command starts (reduce's and the
    night's workers) inherit it."""
    for name in BLAS_THREAD_VARIABLES:
        environ.setdefault(name, "1")


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one bounded piece of work (one master's build).
    Reference counting still frees every array the moment it is dropped: only objects in
    reference cycles wait for the collector's next pass after this, and a build makes few (see
    the module's docstring). A collector already paused by the caller stays paused."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()

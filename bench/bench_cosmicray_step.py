"""What the cosmicray step adds to astroscrappy's own time, and to ccdproc's wrapper.

    flock /tmp/ccdflow-bench.lock python bench/bench_cosmicray_step.py [--size 2048] [--repeat 5]
        [--plain-allocator]

Times are interleaved (astroscrappy, ccdflow step, ccdproc.cosmicray_lacosmic) on the same
float32 frame with a mask, so machine noise hits all three alike; medians are reported. The
step's cost includes reflecting the frame by 8 px at each edge (+1.6 % area at 2048x2048).
The process keeps freed memory (``retain_freed_memory``, as the night's processes do) unless
``--plain-allocator``: all three contenders then reuse astroscrappy's ~160 MiB of temporaries
instead of page-faulting them afresh each call, which costs 0.1-0.4 s of system time per call
on this VM and is the largest source of run-to-run noise in this comparison.
"""

from __future__ import annotations

import argparse
import statistics
import time
from datetime import UTC, datetime

import astropy.units as u
import astroscrappy
import ccdproc
import numpy as np
from astropy.nddata import CCDData

from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.numerics.memory import retain_freed_memory
from ccdflow.plugins.steps.cosmicray import CosmicRayDetector, CosmicRayParams


def frame(size: int) -> CCDData:
    rng = np.random.default_rng(0)
    data = rng.normal(500.0, 12.0, (size, size)).astype(np.float32)
    n = size * size // 1000
    data[rng.integers(0, size, n), rng.integers(0, size, n)] += 3000.0
    mask = np.zeros(data.shape, bool)
    mask[:, size // 3] = True
    return CCDData(data, unit="adu", mask=mask)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--plain-allocator", action="store_true",
                        help="Leave glibc returning freed arrays to the kernel (its default).")
    args = parser.parse_args()
    retained = not args.plain_allocator and retain_freed_memory()
    ccd = frame(args.size)
    config = build(get_plugin_manager(), instrument="generic")
    meta = FrameMeta(frame_type="science", instrument="generic", exposure_time=60.0, shape=ccd.shape,
                     date_obs=datetime(2026, 3, 1, 22, tzinfo=UTC), gain=1.5, read_noise=6.0)
    context = StepContext(meta, config.instrument)
    step, params = CosmicRayDetector(), CosmicRayParams()
    sat = 65535.0 * 1.5
    runs = {
        "astroscrappy.detect_cosmics": lambda: astroscrappy.detect_cosmics(
            ccd.data, inmask=ccd.mask, gain=1.5, readnoise=6.0, satlevel=sat),
        "ccdflow cosmicray step": lambda: step.run(ccd, params, {}, context),
        "ccdproc.cosmicray_lacosmic": lambda: ccdproc.cosmicray_lacosmic(
            ccd, gain=1.5 * u.electron / u.adu, readnoise=6.0 * u.electron, satlevel=sat),
    }
    masks = {name: fn() for name, fn in runs.items()}  # warm-up, and the masks to compare
    differ = masks["ccdflow cosmicray step"].mask != masks["ccdproc.cosmicray_lacosmic"].mask
    rows, cols = np.nonzero(differ)
    edge_distance = np.minimum.reduce([rows, cols, args.size - 1 - rows, args.size - 1 - cols])
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.repeat):
        for name, fn in runs.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    base = statistics.median(times["astroscrappy.detect_cosmics"])
    print(f"{args.size}x{args.size} float32, niter=4, {args.repeat} interleaved runs, medians; "
          f"freed memory {'retained' if retained else 'returned to the kernel'}")
    print(f"{'what':32s} {'median s':>9s} {'min s':>7s} {'vs astroscrappy':>16s}")
    for name, t in times.items():
        print(f"{name:32s} {statistics.median(t):9.3f} {min(t):7.3f} {statistics.median(t) / base:15.3f}x")
    # the step reflects the frame at its edges (edge_pad), ccdproc leaves astroscrappy's border
    print(f"step mask differs from ccdproc's at {int(differ.sum())} pixels, all within "
          f"{int(edge_distance.max(initial=-1)) + 1} px of the edge")


if __name__ == "__main__":
    main()

"""ccdflow's L.A.Cosmic engine against astroscrappy: wall, CPU, speed-up and agreement.

    flock /tmp/ccdflow-bench.lock python bench/bench_cosmicray_engine.py [--size 2048]
        [--repeat 5] [--no-real]

Each case runs both engines interleaved (ours, astroscrappy, ours, ...) on the same float32
frame with the same parameters; medians of wall (perf_counter) and process CPU (both cores
count) are reported with the speed-up, and the agreement of the masks: flagged pixels in
both / flagged in either (100 % = identical) and whether the cleaned images are equal. Cases:
a noise frame with 3,000 hits, the same with stars (some saturated), niter 1 and 4 (the
step's default), then the real EFOSC2 science frames in ../shared (bias level off, x 1.18 e-/ADU,
objlim 8 as the step). Before the table: numba's first-call cost in a fresh process, with
an empty cache (compiling) and with the cache written by the first (loading), and the load
average, to be recorded with the figures (the machine is shared).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import astroscrappy
import numpy as np

from ccdflow.framework.numerics.lacosmic import detect_cosmics
from ccdflow.framework.numerics.memory import retain_freed_memory

REAL = Path(__file__).resolve().parents[2] / "shared" / "data" / "real" / "efosc-ntt"
EFOSC_SCIENCE = ("EFOSC.2022-01-27T02-31-32.701", "EFOSC.2022-01-28T04-54-24.341",
                 "EFOSC.2022-01-28T08-37-47.742", "EFOSC.2022-01-29T01-12-03.548")
FIRST_CALL = ("import time; t = time.perf_counter(); import numpy as np; "
              "from ccdflow.framework.numerics.lacosmic import detect_cosmics; "
              "detect_cosmics(np.ones((64, 64), np.float32)); print(time.perf_counter() - t)")


def simulated(size: int, hits: int, stars: int, seed: int = 0) -> np.ndarray:
    """Sky 1000 e- with its noise, ``stars`` Gaussian stars (FWHM 2.4-7 px, a few above 60,000
    e-), ``hits`` one-pixel hits of 200-5000 e-, half of them two pixels long."""
    rng = np.random.default_rng(seed)
    image = rng.normal(1000.0, 32.0, (size, size))
    for _ in range(stars):
        y, x = rng.uniform(0, size, 2)
        width = rng.uniform(1.0, 3.0)
        rows = slice(max(0, int(y) - 15), min(size, int(y) + 15))
        cols = slice(max(0, int(x) - 15), min(size, int(x) + 15))
        yy, xx = np.mgrid[rows, cols]
        image[rows, cols] += rng.uniform(1e3, 8e4) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2)
                                                             / (2 * width**2))
    ys, xs = rng.integers(0, size, hits), rng.integers(0, size, hits)
    image[ys, xs] += rng.uniform(200, 5000, hits)
    image[np.minimum(ys[::2] + 1, size - 1), xs[::2]] += rng.uniform(200, 3000, len(ys[::2]))
    return image.astype(np.float32)


def efosc(name: str) -> np.ndarray:
    from astropy.io import fits

    raw = fits.getdata(REAL / f"{name}.fits.gz").astype(np.float32)
    return (raw - np.float32(np.median(raw[:, :8]))) * np.float32(1.18)


def first_call_seconds() -> tuple[float, float]:
    """(cold: compiling into an empty cache, warm: loading it) in fresh processes."""
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cold, warm = (float(subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, check=True,
                                           capture_output=True, text=True).stdout) for _ in range(2))
    return cold, warm


def compare(image: np.ndarray, repeat: int, **options) -> dict:
    engines = {"ccdflow": detect_cosmics, "astroscrappy": astroscrappy.detect_cosmics}
    results = {name: fn(image, **options) for name, fn in engines.items()}  # warm-up
    wall: dict[str, list[float]] = {name: [] for name in engines}
    cpu: dict[str, list[float]] = {name: [] for name in engines}
    for _ in range(repeat):
        for name, fn in engines.items():
            w, c = time.perf_counter(), time.process_time()
            fn(image, **options)
            wall[name].append(time.perf_counter() - w)
            cpu[name].append(time.process_time() - c)
    ours, theirs = results["ccdflow"], results["astroscrappy"]
    either = int((ours[0] | theirs[0]).sum())
    return {
        "wall": {k: statistics.median(v) for k, v in wall.items()},
        "cpu": {k: statistics.median(v) for k, v in cpu.items()},
        "flagged": int(theirs[0].sum()),
        "agree": 100.0 * int((ours[0] & theirs[0]).sum()) / either if either else 100.0,
        "cleaned_equal": bool(np.array_equal(ours[1], theirs[1])),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--no-real", action="store_true", help="Skip the EFOSC2 frames.")
    args = parser.parse_args()
    retain_freed_memory()  # as the night's processes do
    print(f"load average before: {os.getloadavg()}")
    cold, warm = first_call_seconds()
    print(f"first call in a fresh process (import + compile or cache load + 64x64 frame): "
          f"cold cache {cold:.2f} s, warm cache {warm:.2f} s")
    hits = 3000 * args.size * args.size // 2048**2
    step = dict(gain=1.0, readnoise=5.0, satlevel=65535.0, sigclip=4.5, sigfrac=0.3, objlim=8.0)
    cases = []
    for stars in (0, 150):
        image = simulated(args.size, hits, stars)
        for niter in (1, 4):
            label = f"{args.size}^2 {hits} hits{f' + {stars} stars' if stars else ''}, niter {niter}"
            cases.append((label, image, dict(step, niter=niter)))
    if not args.no_real and REAL.is_dir():
        for name in EFOSC_SCIENCE:
            cases.append((f"EFOSC2 {name[6:]} 1030^2, niter 4", efosc(name),
                          dict(step, readnoise=10.0, satlevel=65535.0 * 1.18, niter=4)))
    print(f"{args.repeat} interleaved runs per case, medians\n")
    print("| case | ccdflow wall s | astroscrappy wall s | speed-up | ccdflow CPU s | "
          "astroscrappy CPU s | flagged | mask agreement | cleaned equal |")
    print("|---|---|---|---|---|---|---|---|---|")
    for label, image, options in cases:
        r = compare(image, args.repeat, **options)
        w, c = r["wall"], r["cpu"]
        print(f"| {label} | {w['ccdflow']:.3f} | {w['astroscrappy']:.3f} | "
              f"{w['astroscrappy'] / w['ccdflow']:.1f}x | {c['ccdflow']:.3f} | {c['astroscrappy']:.3f} | "
              f"{r['flagged']} | {r['agree']:.3f} % | {'yes' if r['cleaned_equal'] else 'NO'} |",
              flush=True)
    print(f"\nload average after: {os.getloadavg()}")


if __name__ == "__main__":
    main()

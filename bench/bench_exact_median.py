"""What a flat input's level costs: ``np.median`` of a copy of the good pixels (the way
``channels.input_levels`` took it before issue 16) against the radix-select ``median_of``,
on a 2048 x 2048 float32 flat (1 % mask, 0.1 % NaN), monochrome and Bayer (overall plus R, G,
B), single thread; the one-pass path (``median_bracket``: a sample's bracket, one read) against
the two-pass radix select it falls back to, per call (mono with and without a mask, a Bayer
green and red channel); and the first call's cost in a fresh process, with numba's cache empty
and filled. Prints CPU milliseconds per frame (median of ``--repeats`` warm runs) and checks
that every level is numpy's, bit for bit.

    python bench/bench_exact_median.py
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

import numpy as np

from ccdflow.framework.headers.bayer import CHANNELS, Mosaic
from ccdflow.framework.numerics import exact_median
from ccdflow.framework.numerics.exact_median import median_of

FIRST_CALL = """
import time, numpy as np
t = time.perf_counter()
from ccdflow.framework.builders.channels import channel_levels
from ccdflow.framework.headers.bayer import Mosaic
data = np.ones((512, 512), np.float32); mask = np.zeros(data.shape, bool)  # one-pass size
i = time.perf_counter()
channel_levels(data, mask, None); channel_levels(data, mask, Mosaic("RGGB")); channel_levels(data, None, None)
print(f"{(i - t) * 1e3:.0f} {(time.perf_counter() - i) * 1e3:.0f}")
"""


def flat(seed: int = 16) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    data = rng.normal(20000, 150, (2048, 2048)).astype(np.float32)
    data[rng.random(data.shape) < 1e-3] = np.nan
    return data, rng.random(data.shape) < 0.01


def numpy_levels(data: np.ndarray, mask: np.ndarray, mosaic: Mosaic | None) -> list[float]:
    good = np.isfinite(data) & ~mask
    levels = [float(np.median(data[good], overwrite_input=True))]
    for channel in CHANNELS if mosaic else ():
        views = mosaic.views(channel) if mosaic else []
        levels.append(float(np.median(np.concatenate([data[v][good[v]] for v in views]),
                                      overwrite_input=True)))
    return levels


def radix_levels(data: np.ndarray, mask: np.ndarray, mosaic: Mosaic | None) -> list[float]:
    levels = [median_of([data], [mask])]
    for channel in CHANNELS if mosaic else ():
        views = mosaic.views(channel) if mosaic else []
        levels.append(median_of([data[v] for v in views], [mask[v] for v in views]))
    return levels


def cpu_ms(work: Callable[[], object], repeats: int) -> float:
    work()
    times = []
    for _ in range(repeats):
        start = time.process_time()
        work()
        times.append(time.process_time() - start)
    return statistics.median(times) * 1e3


def first_call(cache_dir: str | None) -> str:
    env = dict(os.environ, NUMBA_NUM_THREADS="1")
    if cache_dir:
        env["NUMBA_CACHE_DIR"] = cache_dir
    out = subprocess.run([sys.executable, "-c", FIRST_CALL], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    return f"import {out[0]} ms, first levels (mono + Bayer, masked and not) {out[1]} ms"


def one_pass_vs_two(data: np.ndarray, mask: np.ndarray, repeats: int) -> None:
    """Per call: the two-pass radix select (the one pass switched off) against the default."""
    green, red = Mosaic("RGGB").views("G"), Mosaic("RGGB").views("R")
    calls = {"mono, mask": ([data], [mask]), "mono, no mask": ([data], None),
             "Bayer G (2 views), mask": ([data[v] for v in green], [mask[v] for v in green]),
             "Bayer R, mask": ([data[v] for v in red], [mask[v] for v in red])}
    threshold = exact_median._ONE_PASS_FROM
    for label, (views, masks) in calls.items():
        exact_median._ONE_PASS_FROM = 1 << 62
        two, want = cpu_ms(lambda v=views, m=masks: median_of(v, m), repeats), median_of(views, masks)
        exact_median._ONE_PASS_FROM = threshold
        one, got = cpu_ms(lambda v=views, m=masks: median_of(v, m), repeats), median_of(views, masks)
        assert np.float64(got).tobytes() == np.float64(want).tobytes()
        print(f"{label:24s} two passes {two:5.2f} ms   one pass {one:5.2f} ms   x{two / one:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=10)
    repeats = parser.parse_args().repeats
    data, mask = flat()
    for label, mosaic in (("monochrome", None), ("Bayer RGGB", Mosaic("RGGB"))):
        assert numpy_levels(data, mask, mosaic) == radix_levels(data, mask, mosaic)
        old = cpu_ms(lambda m=mosaic: numpy_levels(data, mask, m), repeats)
        new = cpu_ms(lambda m=mosaic: radix_levels(data, mask, m), repeats)
        print(f"{label:11s} np.median(data[good]) {old:6.1f} ms   median_of {new:6.1f} ms   x{old / new:.1f}")
    no_mask = cpu_ms(lambda: median_of([data]), repeats)
    print(f"median_of without a mask {no_mask:.1f} ms")
    one_pass_vs_two(data, mask, repeats)
    with tempfile.TemporaryDirectory() as empty:
        print("cold cache:", first_call(empty))
        print("warm cache:", first_call(empty))


if __name__ == "__main__":
    main()

"""Combine a stack of frames pixel by pixel, in row bands under a memory limit, on all cores.

Semantics (``docs/combine.md`` has the long form):

- **Bad pixels**: NaN/inf input pixels and pixels set in ``masks`` are masked; they never reach
  the result, the clip statistics or ``n_used``.
- **scales** multiply each frame before anything else (rejection sees scaled values);
  **weights** (one per frame, ``method='mean'`` only) weight the mean of the survivors.
- **clip='sigma'**: centre = median or mean, spread = MAD-std (1.4826 MAD) or population std,
  both in float64 exactly as astropy's ``sigma_clip`` (which ccdproc calls); a value is rejected
  when it is < centre - sigma_low*spread or > centre + sigma_high*spread. ``iterations=1`` is
  ccdproc's single pass. More iterations recompute centre and spread from the survivors and
  reject further, cumulatively (IRAF style: a rejected value never re-enters), stopping early
  when nothing changes.
- **clip='minmax'**: the ``n_low`` lowest and ``n_high`` highest good values of each pixel are
  rejected (ccdproc's ``clip_extrema``, but counting only unmasked values); ties go in frame order.
- **error**: std of the survivors (ddof=1) / sqrt(n_used) (with weights std * sqrt(sum w^2) / sum w),
  times a factor for the pixel's number of good values that makes its square unbiased for the
  variance of the result on Gaussian noise (``gaussian_error_scale``: 1 for a plain mean, 1.41 for
  a clipped mean of 3 frames, 1.16 of 9, 1.05 of 40). NaN when n_used < 2.
- **n_used**: survivors per pixel. A pixel whose inputs are all masked or rejected gets NaN
  data and error and ``n_used = 0``; the caller masks it.
- **rejected_out**: per input, the pixels the rejection removed (not those masked on input).

Differences from ccdproc: ccdproc clips on unscaled data and lets masked pixels take part in the
clip statistics and in ``clip_extrema``; here neither happens.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ccdflow.framework.engine.errors import AlgorithmError, ConfigError
from ccdflow.framework.numerics.combine_sources import (
    FitsSource,
    describe,
    fits_source,
    read_band,
    release_pages,
)

__all__ = ["Combined", "FitsSource", "combine", "fits_source"]

Frame = np.ndarray | FitsSource
BAND_CAP = 8 * 2**20  # default input band: fresh memory is slow on this VM; bigger bands gain nothing
CALIBRATION_PIXELS = 2**14  # Gaussian stacks per size calibrating the error: factor within ~0.3 %
_METHODS, _CLIPS = ("median", "mean"), ("sigma", "minmax", "none")
Method = Literal["median", "mean"]
Clip = Literal["sigma", "minmax", "none"]


@dataclass
class Combined:
    """Result of a combine: the image, its standard error and how many inputs each pixel used."""

    data: np.ndarray
    error: np.ndarray
    n_used: np.ndarray


def available_memory() -> int:
    """Bytes of RAM available now (MemAvailable), or total RAM where /proc is missing."""
    with contextlib.suppress(OSError, ValueError), open("/proc/meminfo") as fh:
        for line in fh:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")


def _choice(name: str, value: str, allowed: Sequence[str]) -> None:
    if value not in allowed:
        raise ConfigError(f"combine: {name}={value!r} is not one of {', '.join(map(repr, allowed))}")


def _per_frame(name: str, values: Sequence[float] | None, n: int) -> np.ndarray | None:
    if values is None:
        return None
    arr = np.asarray(values, np.float64)
    if arr.shape != (n,) or not np.all(np.isfinite(arr)):
        raise ConfigError(f"combine: {name} must be {n} finite numbers, one per frame; got {values!r}")
    return arr


def _check(frames: Sequence[Frame], method: str, clip: str, center: str, deviation: str,
           iterations: int, n_low: int, n_high: int) -> tuple[int, tuple[int, int]]:
    """Refuse what cannot be combined, naming the input and the expectation."""
    _choice("method", method, _METHODS)
    _choice("clip", clip, _CLIPS)
    _choice("center", center, ("median", "mean"))
    _choice("deviation", deviation, ("mad_std", "std"))
    if not frames:
        raise AlgorithmError("nothing to combine: no input frames")
    n = len(frames)
    for i, f in enumerate(frames):
        if len(f.shape) != 2:
            raise AlgorithmError(f"cannot combine {describe(f, i)}: shape {tuple(f.shape)} is not 2-D")
    shape = tuple(frames[0].shape)
    odd = [i for i, f in enumerate(frames) if tuple(f.shape) != shape]
    if odd:
        i = odd[0]
        raise AlgorithmError(f"cannot combine frames of different shapes: {describe(frames[0], 0)} is "
                             f"{shape}, {describe(frames[i], i)} is {tuple(frames[i].shape)} "
                             f"({len(odd)} of {n} frames differ from the first)")
    if n > np.iinfo(np.int16).max:
        raise AlgorithmError(f"cannot combine {n} frames: n_used is int16 (at most 32767)")
    if clip == "sigma" and n < 3:
        raise AlgorithmError(f"sigma clipping needs at least 3 frames, got {n}; "
                             "use clip='none' or clip='minmax'")
    if iterations < 1:
        raise ConfigError(f"combine: iterations={iterations} must be at least 1")
    if clip == "minmax":
        if n_low < 0 or n_high < 0:
            raise ConfigError(f"combine: n_low={n_low}, n_high={n_high} must not be negative")
        if n - n_low - n_high < 1:
            raise AlgorithmError(f"minmax rejection of {n_low} low + {n_high} high values leaves nothing "
                                 f"of {n} frames")
    return n, shape


def _band_rows(n: int, shape: tuple[int, int], memory_limit: int | None, band_bytes: int | None,
               with_masks: bool, with_rejected: bool) -> int:
    """Rows per band: the buffers (band, mask, rejection flags, raw read) and outputs fit the limit."""
    height, width = shape
    per_row = width * (n * (4 + with_masks + with_rejected) + 8)
    outputs = height * width * 10  # data, error float32 + n_used int16
    limit = int(available_memory() // 4 if memory_limit is None else memory_limit)
    room = limit - outputs
    if room < per_row:
        raise ConfigError(f"combine: memory_limit={limit} bytes is too small for {n} frames of "
                          f"{height}x{width}: the outputs take {outputs} and one row of the band "
                          f"{per_row}; allow at least {outputs + per_row}")
    budget = min(room, BAND_CAP if band_bytes is None else max(1, band_bytes))
    return int(min(height, max(1, budget // per_row)))


#: The kernel's rule arguments: method, clip, use_median, use_mad, iterations, sigma_low,
#: sigma_high, n_low, n_high.
Rule = tuple[int, int, bool, bool, int, float, float, int, int]


@functools.lru_cache(maxsize=32)
def gaussian_error_scale(n: int, rule: Rule) -> np.ndarray:
    """Factor ``c[k]`` for a pixel with ``k`` good values: ``(c[k] * std / sqrt(n_used))^2`` is unbiased
    for the variance of the result when the values are Gaussian.

    The survivors' std misses what a rejection costs: a clip cut from few frames removes good
    values and narrows the survivors, and a median or trimmed mean is less efficient than a mean.
    No closed form covers every rule and ``k``, so the factor is measured by running this very rule
    on ``CALIBRATION_PIXELS`` Gaussian stacks of each size (the same seeded draws for every ``k``:
    reproducible). Both sides are ratios to the plain mean and std of the same draws, whose
    expectations are known (1/k and 1): that control variate cuts the noise of ``c`` 2-3 fold.
    A plain mean needs no factor (ddof=1 variance is unbiased).
    """
    from ccdflow.framework.numerics import combine_kernels as kernels

    scale = np.ones(n + 1)
    if rule[:2] == (kernels.METHOD_MEAN, kernels.CLIP_NONE):
        return scale
    npix = CALIBRATION_PIXELS
    stack = np.random.default_rng(20261124).standard_normal((n, npix), np.float32)
    data, error = np.empty(npix, np.float32), np.empty(npix, np.float32)
    used, nothing, ones = np.empty(npix, np.int16), np.zeros((1, 1), np.uint8), np.ones(n + 1)
    total, squares = np.zeros(npix), np.zeros(npix)
    for k in range(1, n + 1):
        total += stack[k - 1]
        squares += np.square(stack[k - 1], dtype=np.float64)
        if k == 1:
            continue
        kernels.combine_band(stack[:k], npix, nothing, False, ones[:k].astype(np.float32), ones[:k], False,
                             nothing, False, kernels.sorting_network(k), *rule, ones, data, error, used)
        ok = used >= 2
        if np.count_nonzero(ok) > npix // 2:
            mean = total[ok] / k
            variance = np.var(data[ok], dtype=np.float64) / (k * np.var(mean))
            expected = np.mean(np.square(error[ok], dtype=np.float64)) / np.mean(
                (squares[ok] - k * mean**2) / (k - 1))
            scale[k] = np.sqrt(variance / expected)
    return scale


def combine(
    frames: Sequence[Frame],
    *,
    method: Method = "median",
    clip: Clip = "sigma",
    sigma_low: float = 3.0,
    sigma_high: float = 3.0,
    center: Literal["median", "mean"] = "median",
    deviation: Literal["mad_std", "std"] = "mad_std",
    iterations: int = 1,
    n_low: int = 1,
    n_high: int = 1,
    scales: Sequence[float] | None = None,
    weights: Sequence[float] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    memory_limit: int | None = None,
    threads: int | None = None,
    rejected_out: Sequence[np.ndarray] | None = None,
    band_bytes: int | None = None,
) -> Combined:
    """Combine equally shaped 2-D frames (arrays or :func:`fits_source` files); see the module doc.

    ``memory_limit`` bounds the engine's buffers and outputs (default a quarter of available RAM);
    ``band_bytes`` caps the input band below that (default 8 MiB, as fast as larger ones).
    """
    from ccdflow.framework.numerics import combine_kernels as kernels  # numba: import only when combining

    n, shape = _check(frames, method, clip, center, deviation, iterations, n_low, n_high)
    scale = _per_frame("scales", scales, n)
    weight = _per_frame("weights", weights, n)
    if weight is not None:
        if method != "mean":
            raise ConfigError("combine: weights apply to method='mean' only (the median is unweighted)")
        if np.any(weight < 0) or not np.any(weight > 0):
            raise ConfigError(f"combine: weights must be >= 0 with at least one > 0; got {weights!r}")
    if masks is not None and len(masks) != n:
        raise ConfigError(f"combine: {len(masks)} masks for {n} frames")
    for i, m in enumerate(masks or []):
        if m is not None and tuple(m.shape) != shape:
            raise AlgorithmError(f"mask of {describe(frames[i], i)} has shape {tuple(m.shape)}, "
                                 f"the frames {shape}")
    if rejected_out is not None:
        if len(rejected_out) != n:
            raise ConfigError(f"combine: {len(rejected_out)} rejected_out arrays for {n} frames")
        for i, r in enumerate(rejected_out):
            if tuple(r.shape) != shape or r.dtype != bool or not r.flags.writeable:
                raise ConfigError(f"combine: rejected_out[{i}] must be a writable bool array of shape "
                                  f"{shape}; got {r.dtype} {tuple(r.shape)}")
    band_masks = masks if masks is not None and any(m is not None for m in masks) else None
    has_masks = band_masks is not None
    want_rejected = rejected_out is not None
    rows = _band_rows(n, shape, memory_limit, band_bytes, has_masks, want_rejected)
    height, width = shape

    band = np.empty((n, rows * width), np.float32)
    mask_band = np.zeros((n, rows * width) if has_masks else (1, 1), np.uint8)
    rej_band = np.zeros((n, rows * width) if want_rejected else (1, 1), np.uint8)
    raw = np.empty(rows * width * 8, np.uint8)
    out = Combined(np.empty(shape, np.float32), np.empty(shape, np.float32), np.empty(shape, np.int16))
    flat_data, flat_err, flat_used = (a.reshape(-1) for a in (out.data, out.error, out.n_used))
    scale_arr = np.ones(n, np.float32) if scale is None else scale.astype(np.float32)
    weight_arr = np.ones(n) if weight is None else weight
    pairs = kernels.sorting_network(n)
    clip_code = {"none": kernels.CLIP_NONE, "sigma": kernels.CLIP_SIGMA, "minmax": kernels.CLIP_MINMAX}[clip]
    rule: Rule = (_METHODS.index(method), clip_code, center == "median", deviation == "mad_std",
                  int(iterations), float(sigma_low), float(sigma_high), int(n_low), int(n_high))
    previous = kernels.get_num_threads()
    # numba.config sets its settings through globals() when it reads the environment
    most = kernels.config.NUMBA_NUM_THREADS  # type: ignore[attr-defined]
    kernels.set_num_threads(max(1, min(threads or previous, most)))
    try:
        error_scale = gaussian_error_scale(n, rule)
        with contextlib.ExitStack() as stack, kernels.parallel_chunksize(kernels.CHUNK):
            for f in frames:
                if isinstance(f, FitsSource) and f._fh is None and f._hdul is None:
                    stack.callback(f.close)
            for r0 in range(0, height, rows):
                r1 = min(height, r0 + rows)
                npix = (r1 - r0) * width
                for i, f in enumerate(frames):
                    read_band(f, r0, r1, band[i, :npix].reshape(r1 - r0, width), raw)
                    if band_masks is not None:
                        m = band_masks[i]
                        target = mask_band[i, :npix].reshape(r1 - r0, width)
                        if m is None:
                            target[...] = 0
                        else:
                            np.copyto(target, m[r0:r1], casting="unsafe")
                            release_pages(m[r0:r1])
                if want_rejected:
                    rej_band[:, :npix] = 0
                kernels.combine_band(
                    band, npix, mask_band, has_masks, scale_arr, weight_arr, weight is not None, rej_band,
                    want_rejected, pairs, *rule, error_scale, flat_data[r0 * width: r1 * width],
                    flat_err[r0 * width: r1 * width], flat_used[r0 * width: r1 * width])
                if rejected_out is not None:
                    for i, r in enumerate(rejected_out):
                        r[r0:r1] = rej_band[i, :npix].reshape(r1 - r0, width)
    finally:
        kernels.set_num_threads(previous)
    return out

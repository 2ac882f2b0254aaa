"""The pixel side of the master QA (see :mod:`ccdflow.caldb.qa`): read a master's values and
errors, model each master's errors, and compute the figures of a new master against an old one.
Pure functions on arrays, apart from reading the two files."""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.utils.exceptions import AstropyWarning
from scipy.ndimage import uniform_filter


def planes(path: str, noise: float | None, per_second: float | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(values, errors, usable, where the errors came from) of a master file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path, memmap=False) as hdul:
            images = [h for h in hdul if getattr(h.data, "ndim", 0) == 2]
            sci = hdul["SCI"] if "SCI" in hdul else images[0]
            data = np.asarray(sci.data, np.float64)
            uncert = np.asarray(hdul["UNCERT"].data, np.float64) if "UNCERT" in hdul else None
            mask = np.asarray(hdul["MASK"].data) != 0 if "MASK" in hdul else np.zeros(data.shape, bool)
    if uncert is not None:
        error, source = uncert, "UNCERT"
    elif noise is not None and noise > 0:
        error, source = np.full(data.shape, float(noise)), "noise statistic"
    else:  # neither: the robust scatter of the master itself
        finite = data[np.isfinite(data) & ~mask]
        error = np.full(data.shape, 1.4826 * float(np.median(np.abs(finite - np.median(finite)))))
        source = "robust scatter"
    if per_second:
        data, error = data / per_second, error / per_second
    usable = np.isfinite(data) & np.isfinite(error) & ~mask
    return data, error, usable, source


def _level(values: np.ndarray) -> float:
    """3-sigma clipped mean: a median of masters made from whole ADU is itself quantised (a
    dark's median rate jumps by a quarter between two identical darks), and a plain mean follows
    hot pixels and cosmic rays."""
    return float(sigma_clipped_stats(values, sigma=3.0, maxiters=5)[0])


def _error_model(data: np.ndarray, error: np.ndarray, usable: np.ndarray
                 ) -> tuple[float, float, float]:
    """(centre, variance at the centre, variance per unit above it) of a master's pixels.

    One pixel's UNCERT comes from the scatter of a few inputs (chi with n - 1 degrees of freedom:
    for three inputs a factor 0.3 too small one time in 20), so a per-pixel test against it would
    flag hundreds of ordinary pixels. Its mean square over the pixels near the median is what the
    combine calibrates (docs/combine.md); above the median (hot pixels, a brighter part of a
    flat) shot noise adds variance in proportion to the signal, whose slope is the median of
    ``(UNCERT**2 - v0) / (value - centre)`` over the pixels well above the centre."""
    values = data[usable]
    centre = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - centre))) or float(np.std(values)) or 1.0
    bulk = usable & (np.abs(data - centre) <= 5 * spread)
    v0 = float(np.mean(np.square(error[bulk]))) if bulk.any() else spread**2
    bright = usable & (data - centre > 5 * math.sqrt(v0))
    slope = 0.0
    if bright.sum() >= 10:
        slope = max(0.0, float(np.median((np.square(error[bright]) - v0) / (data[bright] - centre))))
    return centre, v0, slope


def _smooth_outliers(diff: np.ndarray, variance: np.ndarray, use: np.ndarray,
                     limits: Mapping[str, Any]) -> float:
    """The fraction of pixels where the mean difference over a ``smooth`` x ``smooth`` box
    exceeds ``nsigma`` times its own error: a shadow a few percent deep (a new dust donut) is
    buried in one pixel's noise, not in the box's, which is ``smooth`` times smaller."""
    size = int(limits["smooth"])
    weight = use.astype(np.float64)
    count = uniform_filter(weight, size, mode="constant") * size**2
    total = uniform_filter(np.where(use, diff, 0.0), size, mode="constant") * size**2
    spread = uniform_filter(np.where(use, variance, 0.0), size, mode="constant") * size**2
    full = use & (count >= 0.5 * size**2)  # boxes mostly of usable pixels
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(total[full]) / np.sqrt(spread[full])
    return round(float(np.mean(z > limits["nsigma"])) if z.size else 0.0, 7)


def compare(new: tuple, old: tuple, limits: Mapping[str, Any]) -> dict[str, Any]:
    """The QA figures of ``new`` against ``old`` (each from :func:`_planes`).

    The variance of a pixel's difference is each master's :func:`_error_model` at the *previous*
    master's value there: a hot pixel's shot noise is allowed for, while a bright pixel only the
    new master has (a cosmic ray left in it) gets no such allowance: that is what the test is
    for."""
    (a, ea, ua, source_a), (b, eb, ub, source_b) = new, old
    use = ua & ub
    n = int(use.sum())
    if n == 0:
        return {"n_pixels": 0}
    (_, var_a, slope_a), (centre, var_b, slope_b) = _error_model(a, ea, ua), _error_model(b, eb, ub)
    if not var_a + var_b > 0:  # no UNCERT, no noise, no scatter (a constant test image)
        return {"n_pixels": n, "pixel_error": 0.0}
    variance = var_a + var_b + (slope_a + slope_b) * np.clip(np.nan_to_num(b - centre), 0, None)
    # An error plane made from the scatter of a master's inputs cannot see noise they share (the
    # master bias subtracted from every dark): when the differences scatter more than the planes
    # say, the errors are scaled up to their robust scatter (never down; recorded).
    z = (a - b)[use] / np.sqrt(variance[use])
    scale = max(1.0, 1.4826 * float(np.median(np.abs(z - np.median(z)))))
    variance = variance * scale**2
    diff, sigma = a[use] - b[use], np.sqrt(variance[use])
    level_old = _level(b[use])
    return {
        "n_pixels": n,
        "outlier_fraction": round(float(np.mean(np.abs(diff) > limits["nsigma"] * sigma)), 7),
        "smooth_outlier_fraction": _smooth_outliers(a - b, variance, use, limits),
        "level_shift": round(_level(diff) / (scale * math.sqrt(var_a + var_b)), 4),
        "level_change": None if level_old == 0 else round(_level(a[use]) / level_old - 1.0, 5),
        "pixel_error": round(scale * math.sqrt(var_a + var_b), 6), "error_scale": round(scale, 3),
        "errors": source_a if source_a == source_b else f"{source_a} / {source_b}",
    }


def exceeded(figures: Mapping[str, Any], limits: Mapping[str, Any]) -> list[str]:
    """The figures beyond their limits, in words ('outlier_fraction 0.034 > 0.002')."""
    out = []
    for figure, limit in (("outlier_fraction", "max_outlier_fraction"),
                          ("smooth_outlier_fraction", "max_smooth_outlier_fraction"),
                          ("level_shift", "max_level_shift"), ("level_change", "max_level_change")):
        value = figures.get(figure)
        if value is not None and limits.get(limit) is not None and abs(value) > limits[limit]:
            out.append(f"{figure} {value:.4g} (limit {limits[limit]:g})")
    return out

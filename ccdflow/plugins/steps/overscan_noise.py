"""The noise an overscan correction adds: the subtracted level is itself an estimate from a few
noisy pixels, so every pixel it is subtracted from inherits that estimate's variance, the same
for a whole line (row-correlated noise). docs/steps/overscan.md gives the formulas.

For read noise ``s`` (ADU) and ``N`` finite overscan pixels per line:

- ``line_median``: ``e(N) s^2 / N`` per line, ``e(N)`` the median's variance over the mean's for
  ``N`` Gaussian values (1 for N <= 2, 1.35 for 3, 1.43 for 5; pi/2 for many);
- ``poly``: the line medians' variance times the fit's leverage at each line
  (``x_i^T (X^T X)^-1 x_i``, about ``(order + 1) / lines`` on average);
- ``mean``, ``median``, ``clipped_mean`` (one level for the amplifier): ``s^2 / N_total``, times
  ``e(N_total)`` for the median (a 3-sigma clip of Gaussian noise changes a mean's by < 1 %).
"""

from __future__ import annotations

import functools
import math

import numpy as np

#: Medians drawn per ``N`` to measure e(N) (relative error ~0.3 %; seeded: reproducible), and at
#: most this many values in all (relative error ~1 % at N = 400, where e(N) is nearly pi/2).
_DRAWS, _VALUES = 200_000, 6_000_000
#: Above this many values e(N) is pi/2 (N e(N) - N pi/2 shrinks as 1/N; < 0.5 % here).
_LARGE = 400


@functools.lru_cache(maxsize=512)
def median_factor(n: int) -> float:
    """``e(n)``: variance of the median of ``n`` Gaussian values over that of their mean.

    The exact small-``n`` values (even ``n`` averages the two middle values) have no closed form,
    so they are measured once per ``n`` on seeded Gaussian draws."""
    if n <= 2:
        return 1.0
    if n > _LARGE:
        return math.pi / 2
    rng = np.random.default_rng(20261205 + n)
    medians = np.median(rng.standard_normal((min(_DRAWS, _VALUES // n), n)), axis=1)
    return n * float(np.mean(medians.astype(np.float64) ** 2))


def strip_noise(strip: np.ndarray) -> float:
    """Pixel noise (ADU) of an overscan strip from double differences, the 4-sigma clipped std of
    ``(x[i,j] - x[i,j+1]) - (x[i+1,j] - x[i+1,j+1])`` over 2. Row and column patterns cancel
    (both are common to overscan and data and removed correctly: not noise of the estimate);
    read noise stays. Not a MAD: raw counts are integers, and the MAD of integer differences
    moves in steps of 1 ADU (10 % of a 3 ADU noise). The clip (a cosmic ray, a hot column) costs
    0.05 % of a Gaussian's std. A strip one pixel wide falls back to single differences."""
    from astropy.stats import sigma_clipped_stats

    strip = np.asarray(strip, np.float64)
    if strip.shape[0] >= 2 and strip.shape[1] >= 2:
        diff = np.diff(np.diff(strip, axis=1), axis=0)
        scale = 2.0
    else:
        diff = np.diff(strip.ravel())
        scale = math.sqrt(2.0)
    diff = diff[np.isfinite(diff)]
    if diff.size < 2:
        return 0.0
    return float(sigma_clipped_stats(diff, sigma=4.0, maxiters=10)[2]) / scale


def level_variance(oriented: np.ndarray, method: str, poly_order: int = 3) -> np.ndarray:
    """Variance (ADU^2) of the level :func:`overscan_model` takes from the ``oriented`` strip
    (lines along axis 0): per line for line methods, 0-d for one level."""
    s2 = strip_noise(oriented) ** 2
    finite = np.isfinite(oriented)
    if method in ("median", "mean", "clipped_mean"):
        n = int(finite.sum())
        factor = median_factor(n) if method == "median" else 1.0
        return np.asarray(s2 * factor / max(n, 1), np.float64)
    counts = finite.sum(axis=1)
    factors = np.array([median_factor(int(c)) for c in counts])
    with np.errstate(divide="ignore", invalid="ignore"):
        per_line = np.where(counts > 0, s2 * factors / counts, np.nan)
    if method == "line_median":
        return per_line
    good = counts > 0
    if good.sum() < 1:
        return per_line
    deg = min(poly_order, int(good.sum()) - 1)
    x = np.linspace(-1.0, 1.0, per_line.size)
    basis = np.polynomial.legendre.legvander(x, deg)  # any basis: the leverage is the same
    inverse = np.linalg.pinv(basis[good].T @ basis[good])
    leverage = np.einsum("ij,jk,ik->i", basis, inverse, basis)
    return leverage * float(np.mean(per_line[good]))


def spread(values: np.ndarray, by_rows: bool, overscan: tuple[slice, slice], target: tuple[slice, slice],
           shape: tuple[int, int]) -> np.ndarray:
    """Per-line ``values`` (or a 0-d value) laid over ``target``'s pixels: the line of each row
    (side overscan) or column (top/bottom overscan), clipped to the lines measured."""
    if values.ndim == 0:
        return values
    if by_rows:
        rows = np.arange(shape[0])[target[0]]
        return values[np.clip(rows - overscan[0].start, 0, values.size - 1), None]
    cols = np.arange(shape[1])[target[1]]
    return values[None, np.clip(cols - overscan[1].start, 0, values.size - 1)]

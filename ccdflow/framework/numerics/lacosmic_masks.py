"""The boolean and cleaning passes of L.A.Cosmic (numba, rows over both cores, fused).

astroscrappy walks the frame once per numpy expression (a dozen passes for the tests and
growths of one iteration); here each stage is one pass. Edges follow astroscrappy: its
dilations leave a border as wide as their half-width holding the input, and its cleaning
leaves the outer two rows and columns as they are.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _dilated(src, j, i, half):  # pragma: no cover - compiled
    """astroscrappy's dilate3 (half 1) or dilate5 (half 2: 5x5 without its corners) at (j, i)."""
    ny, nx = src.shape
    if j < half or j >= ny - half or i < half or i >= nx - half:
        return src[j, i] != 0
    for dj in range(-half, half + 1):
        for di in range(-half, half + 1):
            if half == 2 and (dj == -2 or dj == 2) and (di == -2 or di == 2):
                continue
            if src[j + dj, i + di]:
                return True
    return False


@njit(cache=True, inline="always")
def _kept(hit, j, i, out, keep, sp, limit):  # pragma: no cover - compiled
    value = np.uint8(hit != 0) & np.uint8(keep[j, i] == 0) & np.uint8(sp[j, i] > limit)
    out[j, i] = value
    return value


@njit(cache=True)
def _dilated3_row(src, j, out, keep, sp, limit):  # pragma: no cover - compiled
    """Row ``j`` of ``src`` dilated by 3x3 (astroscrappy's border: the input), kept where
    ``keep`` is 0 and ``sp`` exceeds ``limit``; the inner loop is branch-free (vectorised)."""
    ny, nx = src.shape
    count = 0
    if j == 0 or j == ny - 1:
        for i in range(nx):
            count += _kept(src[j, i], j, i, out, keep, sp, limit)
        return count
    count += _kept(src[j, 0], j, 0, out, keep, sp, limit)
    for i in range(1, nx - 1):
        hit = (src[j - 1, i - 1] | src[j - 1, i] | src[j - 1, i + 1] | src[j, i - 1] | src[j, i]
               | src[j, i + 1] | src[j + 1, i - 1] | src[j + 1, i] | src[j + 1, i + 1])
        count += _kept(hit, j, i, out, keep, sp, limit)
    if nx > 1:
        count += _kept(src[j, nx - 1], j, nx - 1, out, keep, sp, limit)
    return count


@njit(cache=True, parallel=True)
def dilate(src, half, out):  # pragma: no cover - compiled
    """``out`` = ``src`` (uint8) dilated once by astroscrappy's dilate3 (half 1) or dilate5
    (half 2)."""
    ny, nx = src.shape
    for j in prange(ny):
        for i in range(nx):
            out[j, i] = _dilated(src, j, i, half)


@njit(cache=True, parallel=True)
def noise_of(median_variance, bkg, with_bkg, out):  # pragma: no cover - compiled
    """``out`` = sqrt(median-filtered variance (+ ``bkg``), floored at 1e-5)."""
    ny, nx = out.shape
    floor = np.float32(0.00001)
    for j in prange(ny):
        for i in range(nx):
            v = median_variance[j, i]
            if with_bkg:
                v += bkg[j, i]
            out[j, i] = np.sqrt(floor if v < floor else v)


@njit(cache=True, parallel=True)
def candidates(s, sp, fine, fine_med, noise, mask, sigclip, objlim, out):  # pragma: no cover - compiled
    """``sp`` (holding the median of ``s``) becomes the Laplacian excess ``s`` - median; ``out``
    = pixels where it passes ``sigclip`` and beats the fine structure ((fine - fine_med) /
    noise, floored at 0.01) by ``objlim``, outside ``mask``."""
    ny, nx = sp.shape
    floor = np.float32(0.01)
    for j in prange(ny):
        for i in range(nx):
            excess = s[j, i] - sp[j, i]
            sp[j, i] = excess
            f = (fine[j, i] - fine_med[j, i]) / noise[j, i]
            if f < floor:
                f = floor
            out[j, i] = (excess > sigclip) & (mask[j, i] == 0) & (excess / f > objlim)


@njit(cache=True, parallel=True)
def grown(src, mask, sp, limit, out):  # pragma: no cover - compiled
    """``src`` (uint8) dilated by 3x3, kept outside ``mask`` where ``sp`` exceeds ``limit``;
    returns the number of pixels set."""
    ny = src.shape[0]
    counts = np.zeros(ny, np.int64)  # per row: a parfor reduction needs no shared variable
    for j in prange(ny):
        counts[j] = _dilated3_row(src, j, out, mask, sp, limit)
    return counts.sum()


@njit(cache=True, parallel=True)
def clean_mean(values, crmask, mask, level, use_level):  # pragma: no cover - compiled
    """astroscrappy's meanmask cleaning, in place: each ``crmask`` pixel (outer two rows and
    columns excepted) becomes the float32 mean of the 5x5 pixels in neither mask; where there
    is none it is left alone and counted (``use_level`` False) or set to ``level``. Only
    masked pixels are written and only unmasked ones read, so the rows run in any order."""
    ny, nx = values.shape
    empty = np.zeros(max(ny, 0), np.int64)
    for j in prange(2, ny - 2):
        n_empty = 0
        for i in range(2, nx - 2):
            if not crmask[j, i]:
                continue
            total = np.float32(0.0)
            count = 0
            for dj in range(-2, 3):
                for di in range(-2, 3):
                    if not crmask[j + dj, i + di] and not mask[j + dj, i + di]:
                        total += values[j + dj, i + di]
                        count += 1
            if count:
                values[j, i] = total / np.float32(count)
            elif use_level:
                values[j, i] = level
            else:
                n_empty += 1
        empty[j] = n_empty
    return empty.sum()

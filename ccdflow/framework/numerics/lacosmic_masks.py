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


@njit(cache=True, parallel=True)
def dilate(src, half, out):  # pragma: no cover - compiled
    """``out`` = ``src`` dilated once by astroscrappy's dilate3 (half 1) or dilate5 (half 2)."""
    ny, nx = src.shape
    for j in prange(ny):
        for i in range(nx):
            out[j, i] = _dilated(src, j, i, half)


@njit(cache=True, parallel=True)
def candidates(sp, fine, fine_med, noise, mask, sigclip, objlim, out):  # pragma: no cover - compiled
    """Pixels whose Laplacian excess ``sp`` passes ``sigclip`` and beats the fine structure
    ((fine - fine_med) / noise, floored at 0.01) by ``objlim``, outside ``mask``."""
    ny, nx = sp.shape
    floor = np.float32(0.01)
    for j in prange(ny):
        for i in range(nx):
            f = (fine[j, i] - fine_med[j, i]) / noise[j, i]
            if f < floor:
                f = floor
            out[j, i] = sp[j, i] > sigclip and not mask[j, i] and sp[j, i] / f > objlim


@njit(cache=True, parallel=True)
def grown(src, mask, sp, limit, out):  # pragma: no cover - compiled
    """``src`` dilated by 3x3, kept outside ``mask`` where ``sp`` exceeds ``limit``; returns the
    number of pixels set."""
    ny, nx = src.shape
    counts = np.zeros(ny, np.int64)  # per row: a parfor reduction needs no shared variable
    for j in prange(ny):
        n = 0
        for i in range(nx):
            hit = sp[j, i] > limit and not mask[j, i] and _dilated(src, j, i, 1)
            out[j, i] = hit
            n += hit
        counts[j] = n
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

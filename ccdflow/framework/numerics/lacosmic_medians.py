"""Median selection networks and the median filters L.A.Cosmic needs (numba, rows over both cores).

astroscrappy's filters leave a border as wide as the half-width holding the input's values
(only whole windows are filtered); these do the same, so the masks agree at the edges too. A
median picks one of the window's values, so any exact median gives astroscrappy's bits: the
networks are Batcher's merge-exchange sorters pruned to the comparators the middle output
depends on (checked on every 0/1 input in tests/test_lacosmic_engine.py), branch-free, so LLVM
vectorises the loop along a row.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _lo(a, b):  # pragma: no cover - compiled
    return a if a < b else b


@njit(cache=True)
def _hi(a, b):  # pragma: no cover - compiled
    return b if a < b else a


@njit(cache=True, inline="always")
def median3(a0, a1, a2):  # pragma: no cover - compiled
    """Median of 3 values: 3 compare-exchanges (Batcher, pruned to the middle)."""
    a0, a2 = _lo(a0, a2), _hi(a0, a2)
    a0, a1 = _lo(a0, a1), _hi(a0, a1)
    a1, a2 = _lo(a1, a2), _hi(a1, a2)
    return a1


@njit(cache=True, inline="always")
def median5(a0, a1, a2, a3, a4):  # pragma: no cover - compiled
    """Median of 5 values: 8 compare-exchanges (Batcher, pruned to the middle)."""
    a0, a4 = _lo(a0, a4), _hi(a0, a4)
    a0, a2 = _lo(a0, a2), _hi(a0, a2)
    a1, a3 = _lo(a1, a3), _hi(a1, a3)
    a2, a4 = _lo(a2, a4), _hi(a2, a4)
    a0, a1 = _lo(a0, a1), _hi(a0, a1)
    a2, a3 = _lo(a2, a3), _hi(a2, a3)
    a1, a4 = _lo(a1, a4), _hi(a1, a4)
    a1, a2 = _lo(a1, a2), _hi(a1, a2)
    return a2


@njit(cache=True, inline="always")
def median7(a0, a1, a2, a3, a4, a5, a6):  # pragma: no cover - compiled
    """Median of 7 values: 14 compare-exchanges (Batcher, pruned to the middle)."""
    a0, a4 = _lo(a0, a4), _hi(a0, a4)
    a1, a5 = _lo(a1, a5), _hi(a1, a5)
    a2, a6 = _lo(a2, a6), _hi(a2, a6)
    a0, a2 = _lo(a0, a2), _hi(a0, a2)
    a1, a3 = _lo(a1, a3), _hi(a1, a3)
    a4, a6 = _lo(a4, a6), _hi(a4, a6)
    a2, a4 = _lo(a2, a4), _hi(a2, a4)
    a3, a5 = _lo(a3, a5), _hi(a3, a5)
    a0, a1 = _lo(a0, a1), _hi(a0, a1)
    a2, a3 = _lo(a2, a3), _hi(a2, a3)
    a4, a5 = _lo(a4, a5), _hi(a4, a5)
    a1, a4 = _lo(a1, a4), _hi(a1, a4)
    a3, a6 = _lo(a3, a6), _hi(a3, a6)
    a3, a4 = _lo(a3, a4), _hi(a3, a4)
    return a3


@njit(cache=True, inline="always")
def median9(a0, a1, a2, a3, a4, a5, a6, a7, a8):  # pragma: no cover - compiled
    """Median of 9 values: 22 compare-exchanges (Batcher, pruned to the middle)."""
    a0, a8 = _lo(a0, a8), _hi(a0, a8)
    a0, a4 = _lo(a0, a4), _hi(a0, a4)
    a1, a5 = _lo(a1, a5), _hi(a1, a5)
    a2, a6 = _lo(a2, a6), _hi(a2, a6)
    a3, a7 = _lo(a3, a7), _hi(a3, a7)
    a4, a8 = _lo(a4, a8), _hi(a4, a8)
    a0, a2 = _lo(a0, a2), _hi(a0, a2)
    a1, a3 = _lo(a1, a3), _hi(a1, a3)
    a4, a6 = _lo(a4, a6), _hi(a4, a6)
    a5, a7 = _lo(a5, a7), _hi(a5, a7)
    a2, a8 = _lo(a2, a8), _hi(a2, a8)
    a2, a4 = _lo(a2, a4), _hi(a2, a4)
    a3, a5 = _lo(a3, a5), _hi(a3, a5)
    a6, a8 = _lo(a6, a8), _hi(a6, a8)
    a0, a1 = _lo(a0, a1), _hi(a0, a1)
    a2, a3 = _lo(a2, a3), _hi(a2, a3)
    a4, a5 = _lo(a4, a5), _hi(a4, a5)
    a6, a7 = _lo(a6, a7), _hi(a6, a7)
    a1, a8 = _lo(a1, a8), _hi(a1, a8)
    a1, a4 = _lo(a1, a4), _hi(a1, a4)
    a3, a6 = _lo(a3, a6), _hi(a3, a6)
    a3, a4 = _lo(a3, a4), _hi(a3, a4)
    return a4


@njit(cache=True, inline="always")
def _line_median(x, j, i, dj, di, half):  # pragma: no cover - compiled
    """Median of the 2 half + 1 values of ``x`` centred on (j, i) along the step (dj, di)."""
    if half == 1:
        return median3(x[j - dj, i - di], x[j, i], x[j + dj, i + di])
    if half == 2:
        return median5(x[j - 2 * dj, i - 2 * di], x[j - dj, i - di], x[j, i], x[j + dj, i + di],
                       x[j + 2 * dj, i + 2 * di])
    if half == 3:
        return median7(x[j - 3 * dj, i - 3 * di], x[j - 2 * dj, i - 2 * di], x[j - dj, i - di],
                       x[j, i], x[j + dj, i + di], x[j + 2 * dj, i + 2 * di],
                       x[j + 3 * dj, i + 3 * di])
    return median9(x[j - 4 * dj, i - 4 * di], x[j - 3 * dj, i - 3 * di], x[j - 2 * dj, i - 2 * di],
                   x[j - dj, i - di], x[j, i], x[j + dj, i + di], x[j + 2 * dj, i + 2 * di],
                   x[j + 3 * dj, i + 3 * di], x[j + 4 * dj, i + 4 * di])


@njit(cache=True, parallel=True)
def separable_median(x, half, out, rows):  # pragma: no cover - compiled
    """``out`` = median along columns of the medians along rows, windows 2 half + 1 (half 1-4);
    the border ``half`` wide keeps ``x``'s values. ``rows`` is scratch of ``x``'s shape."""
    ny, nx = x.shape
    for j in prange(ny):
        if half == 1:  # one branch per row: the loops below stay branch-free
            for i in range(1, nx - 1):
                rows[j, i] = _line_median(x, j, i, 0, 1, 1)
        elif half == 2:
            for i in range(2, nx - 2):
                rows[j, i] = _line_median(x, j, i, 0, 1, 2)
        elif half == 3:
            for i in range(3, nx - 3):
                rows[j, i] = _line_median(x, j, i, 0, 1, 3)
        else:
            for i in range(4, nx - 4):
                rows[j, i] = _line_median(x, j, i, 0, 1, 4)
    for j in prange(ny):
        for i in range(nx):
            out[j, i] = x[j, i]
        if half <= j < ny - half:
            if half == 1:
                for i in range(1, nx - 1):
                    out[j, i] = _line_median(rows, j, i, 1, 0, 1)
            elif half == 2:
                for i in range(2, nx - 2):
                    out[j, i] = _line_median(rows, j, i, 1, 0, 2)
            elif half == 3:
                for i in range(3, nx - 3):
                    out[j, i] = _line_median(rows, j, i, 1, 0, 3)
            else:
                for i in range(4, nx - 4):
                    out[j, i] = _line_median(rows, j, i, 1, 0, 4)


@njit(cache=True, parallel=True)
def box_median(x, half, out):  # pragma: no cover - compiled
    """``out`` = median of the (2 half + 1)^2 box (sepmed=False); border as above. Sorting a
    small buffer: the full 2-D median is the slow, rarely chosen option."""
    ny, nx = x.shape
    width = 2 * half + 1
    for j in prange(ny):
        window = np.empty(width * width, x.dtype)
        for i in range(nx):
            if half <= j < ny - half and half <= i < nx - half:
                n = 0
                for dj in range(-half, half + 1):
                    for di in range(-half, half + 1):
                        window[n] = x[j + dj, i + di]
                        n += 1
                window.sort()
                out[j, i] = window[width * width // 2]
            else:
                out[j, i] = x[j, i]


def median_filter(x: np.ndarray, half: int, separable: bool, out: np.ndarray | None = None,
                  scratch: np.ndarray | None = None) -> np.ndarray:
    """astroscrappy's sepmedfilt(2 half + 1) (``separable``) or medfilt(2 half + 1) of float32
    ``x``, into ``out`` if given (``scratch``: a buffer of ``x``'s shape for the row pass)."""
    out = np.empty_like(x) if out is None else out
    if separable:
        separable_median(x, half, out, np.empty_like(x) if scratch is None else scratch)
    else:
        box_median(x, half, out)
    return out

"""The whole-frame passes of frame QA (numba, one thread): defects, smoothing; the stars' boxes.

Measuring a 2048 x 2048 product with numpy, scipy.ndimage and photutils walked the frame some
twenty times (the DQ bits, the defect mask, the residual, a float64 Gaussian filter, the
threshold, the segment sizes and boxes, the sky mask); here each is one compiled pass that
reads its inputs once (the detection: :mod:`~ccdflow.framework.numerics.frame_qa_detect`).
The smoothing is scipy's ``gaussian_filter`` to the bit (same weights, same order of the sums
in float64, the same float32 intermediate between the two axes), so the detection sees the same
pixels above its threshold as before.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True)
def defects(data, flags, mask, bit, unc, out):  # pragma: no cover - compiled
    """``out`` = pixels with a defect: a non-finite value or a DQ bit of ``bit[0]``,
    the bits being :func:`ccdflow.framework.dq.reconcile`'s (``flags`` where ``mask``, ``bit[1]``
    (MASKED) for a masked pixel without one; ``flags`` or ``mask`` empty: none), made on the fly
    instead of as a frame. Returns the counts: pixels with ``bit[2]`` (COSMIC), ``bit[3]``
    (SATURATED), defects, good pixels with a positive ``unc`` (``unc`` empty: 0)."""
    n_cosmic = n_saturated = n_defect = n_positive = 0
    with_flags, with_mask, with_unc = flags.size == data.size, mask.size == data.size, unc.size == data.size
    defect, masked, cosmic, saturated = bit[0], bit[1], bit[2], bit[3]
    zero = np.uint16(0)
    for i in range(data.size):  # branch-free, so that it vectorises
        f = flags[i] if with_flags else zero
        b = (f if f != zero else masked) if with_mask and mask[i] else zero
        bad = ((b & defect) != zero) | (not np.isfinite(data[i]))
        out[i] = bad
        n_cosmic += (b & cosmic) != zero
        n_saturated += (b & saturated) != zero
        n_defect += bad
    if with_unc:
        for i in range(data.size):
            n_positive += (not out[i]) & (unc[i] > 0)
    return n_cosmic, n_saturated, n_defect, n_positive


@njit(cache=True, inline="always")
def _reflect(i, n):  # pragma: no cover - compiled
    """scipy.ndimage's 'reflect' edge (d c b a | a b c d | d c b a) for any index."""
    i = i % (2 * n)
    return 2 * n - 1 - i if i >= n else i


@njit(cache=True, nogil=True)
def smooth_residual(data, defect, level, weights, out):  # pragma: no cover - compiled
    """``out`` = ``where(defect, 0, data - level)`` (float32) smoothed by the symmetric 7-tap
    kernel ``weights`` (a 1-pixel sigma to 3 sigmas) as ``scipy.ndimage.gaussian_filter`` does
    it: along axis 0 then axis 1, each 1-D pass summing in float64 as
    ``x0 w0 + (x-3 + x+3) w3 + (x-2 + x+2) w2 + (x-1 + x+1) w1`` and storing float32, edges
    reflected. The residual rows are made once each, in a ring of seven (the rows one output row
    needs, reflected ones included, are distinct there); the taps are written out so the loops
    vectorise (a loop over the taps ran three times slower)."""
    ny, nx = data.shape
    w0, w1, w2, w3 = weights[3], weights[2], weights[1], weights[0]
    ring = np.empty((7, nx), np.float32)
    held = np.full(7, -1, np.int64)  # the frame row each slot holds
    row = np.empty(nx + 6, np.float32)  # one row after the first pass, reflected at both ends
    zero = np.float32(0.0)
    for i in range(ny):
        for k in range(-3, 4):
            m = _reflect(i + k, ny)
            if held[m % 7] != m:
                held[m % 7] = m
                slot = ring[m % 7]
                for j in range(nx):
                    slot[j] = zero if defect[m, j] else data[m, j] - level
        a3, a2 = ring[_reflect(i - 3, ny) % 7], ring[_reflect(i - 2, ny) % 7]
        a1, c, b1 = ring[_reflect(i - 1, ny) % 7], ring[i % 7], ring[_reflect(i + 1, ny) % 7]
        b2, b3 = ring[_reflect(i + 2, ny) % 7], ring[_reflect(i + 3, ny) % 7]
        for j in range(nx):
            s = np.float64(c[j]) * w0
            s += (np.float64(a3[j]) + np.float64(b3[j])) * w3
            s += (np.float64(a2[j]) + np.float64(b2[j])) * w2
            s += (np.float64(a1[j]) + np.float64(b1[j])) * w1
            row[3 + j] = np.float32(s)
        for k in range(1, 4):
            row[3 - k] = row[3 + _reflect(-k, nx)]
            row[2 + nx + k] = row[3 + _reflect(nx - 1 + k, nx)]
        o = out[i]
        for j in range(nx):
            s = np.float64(row[j + 3]) * w0
            s += (np.float64(row[j]) + np.float64(row[j + 6])) * w3
            s += (np.float64(row[j + 1]) + np.float64(row[j + 5])) * w2
            s += (np.float64(row[j + 2]) + np.float64(row[j + 4])) * w1
            o[j] = np.float32(s)


@njit(cache=True, nogil=True)
def any_flagged(flags, mask, rows, cols, bits):  # pragma: no cover - compiled
    """Whether a masked pixel in ``rows`` x ``cols`` (start, stop; clipped to the frame) has a
    flag of ``bits``: a star's box tested in a microsecond instead of numpy's ten."""
    ny, nx = mask.shape
    for i in range(max(0, rows[0]), min(ny, rows[1])):
        for j in range(max(0, cols[0]), min(nx, cols[1])):
            if mask[i, j] and flags[i, j] & bits:
                return True
    return False


@njit(cache=True, nogil=True)
def segment_moments(data, sky, labels, defect, label, box):  # pragma: no cover - compiled
    """photutils SourceCatalog's moments of source ``label`` in ``box`` (row, column start and
    stop) on ``data - sky``: its highest value (``max_value``) over its pixels without a defect,
    and the centroid (x, y) and the central second moments (xx, xy, yy, over the total) of
    those with a value not below 0 (photutils' moment data). NaN for no such pixel."""
    y0, y1, x0, x1 = box[0], box[1], box[2], box[3]
    peak = -np.inf
    m00 = m10 = m01 = 0.0
    for i in range(y0, y1):
        for j in range(x0, x1):
            v = data[i, j] - sky
            if labels[i, j] != label or defect[i, j] or not np.isfinite(v):
                continue
            peak = max(peak, v)
            if v >= 0:
                m00 += v
                m10 += v * (i - y0)
                m01 += v * (j - x0)
    if m00 == 0:
        return (peak if peak > -np.inf else np.nan), np.nan, np.nan, np.nan, np.nan, np.nan
    yc, xc = m10 / m00, m01 / m00
    xx = xy = yy = 0.0
    for i in range(y0, y1):
        for j in range(x0, x1):
            v = data[i, j] - sky
            if labels[i, j] != label or defect[i, j] or not (v >= 0):
                continue
            dy, dx = i - y0 - yc, j - x0 - xc
            xx += v * dx * dx
            xy += v * dx * dy
            yy += v * dy * dy
    return peak, xc + x0, yc + y0, xx / m00, xy / m00, yy / m00

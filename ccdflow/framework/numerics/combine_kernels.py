"""Compiled kernels of the combine engine: a sorting network across frames, then per-pixel statistics.

A band of ``n`` frames is processed in blocks of ``BLOCK`` pixels laid out ``[n, BLOCK]``. Bad
pixels (masked, NaN, inf) become ``+inf`` so they sort to the top; each compare-exchange of the
network is an elementwise min/max over a whole block, which the compiler turns into SIMD
instructions. With the stack sorted, a pixel's ``k`` good values are ``tmp[0:k]``, survivors of a
rejection are a contiguous range ``[lo, hi)``, and median, MAD, min/max rejection and clipped mean
all read from it. Clip statistics are float64, in the same order of operations as astropy's
``sigma_clip`` (which ccdproc calls), so the clip boundary matches ccdproc exactly.
"""

from __future__ import annotations

import math

import numpy as np
from numba import config, get_num_threads, njit, parallel_chunksize, prange, set_num_threads  # noqa: F401

BLOCK = 512  # pixels per block: n * BLOCK * 4 bytes stays in L1/L2 for the usual stacks
CHUNK = 4  # blocks a thread takes at a time: dynamic scheduling, so a core busy elsewhere does not stall
MAD_TO_STD = 1.482602218505602  # astropy's mad_std constant

METHOD_MEDIAN, METHOD_MEAN = 0, 1
CLIP_NONE, CLIP_SIGMA, CLIP_MINMAX = 0, 1, 2


def sorting_network(n: int) -> np.ndarray:
    """Comparator pairs (i < j) of Batcher's odd-even merge sort for ``n`` inputs.

    Built for the next power of two; comparators touching padded indices are dropped, which is exact
    because padded slots hold +inf and every comparator puts its minimum at the lower index.
    """
    size = 1
    while size < n:
        size *= 2
    pairs = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return np.asarray(pairs, dtype=np.int32).reshape(-1, 2)


@njit(cache=True, inline="always")
def _median(tmp, p, lo, hi):
    """Median of the sorted column ``tmp[lo:hi, p]`` (mean of the two middles for even counts)."""
    m = hi - lo
    h = lo + m // 2
    if m % 2 == 1:
        return np.float64(tmp[h, p])
    return 0.5 * (np.float64(tmp[h - 1, p]) + np.float64(tmp[h, p]))


@njit(cache=True, inline="always")
def _range_mean_std(tmp, lo, hi, nb, mean, std, cnt):
    """Per-pixel mean, population std and count of the good values of ``tmp[lo:hi]`` (float64 sums)."""
    n = tmp.shape[0]
    for p in range(nb):
        mean[p] = 0.0
        std[p] = 0.0
        cnt[p] = 0
    for i in range(n):
        for p in range(nb):
            v = tmp[i, p]
            inside = (i >= lo[p]) & (i < hi[p]) & (v < np.inf)
            mean[p] += v if inside else 0.0
            cnt[p] += 1 if inside else 0
    for p in range(nb):
        mean[p] = mean[p] / max(cnt[p], 1)
    for i in range(n):
        for p in range(nb):
            d = tmp[i, p] - mean[p]
            std[p] += d * d if ((i >= lo[p]) & (i < hi[p]) & (tmp[i, p] < np.inf)) else 0.0
    for p in range(nb):
        std[p] = math.sqrt(std[p] / max(cnt[p], 1))


@njit(cache=True, inline="always")
def _range_mad(tmp, dev, pairs64, lo, hi, med, nb, out):
    """Per-pixel median of |x - med| over ``tmp[lo:hi]``: exact float64 deviations sorted by network."""
    n = tmp.shape[0]
    for i in range(n):
        for p in range(nb):
            d = abs(np.float64(tmp[i, p]) - med[p])
            dev[i, p] = d if ((i >= lo[p]) & (i < hi[p])) else np.inf
    _sort_block(dev, pairs64, nb)
    for p in range(nb):
        out[p] = _median(dev, p, 0, hi[p] - lo[p]) if hi[p] > lo[p] else np.nan


@njit(cache=True, inline="always")
def _sigma_clip(tmp, dev, pairs, lo, hi, nb, use_median, use_mad, iterations, sigma_low, sigma_high,
               med, mean, std, cnt):
    """Shrink each pixel's survivor range ``[lo, hi)``; one pass = ccdproc, more are cumulative.

    Statistics and bounds follow astropy's ``compute_sigma_clipped_bounds`` operation by operation.
    Rejected values never re-enter; a pixel whose range did not change is stable, so the block
    stops when no pixel changes.
    """
    lower, upper = np.empty(nb), np.empty(nb)
    below, above = np.empty(nb, np.int32), np.empty(nb, np.int32)
    for _ in range(iterations):
        if use_median or use_mad:
            for p in range(nb):
                med[p] = _median(tmp, p, lo[p], hi[p]) if hi[p] > lo[p] else np.nan
        if not use_median or not use_mad:
            _range_mean_std(tmp, lo, hi, nb, mean, std, cnt)
        if use_mad:
            _range_mad(tmp, dev, pairs, lo, hi, med, nb, std)
            for p in range(nb):
                std[p] = std[p] * MAD_TO_STD
        for p in range(nb):
            cen = med[p] if use_median else mean[p]
            lower[p] = cen - sigma_low * std[p]
            upper[p] = cen + sigma_high * std[p]
            below[p] = 0
            above[p] = 0
        for i in range(tmp.shape[0]):
            for p in range(nb):
                v = np.float64(tmp[i, p])
                inside = (i >= lo[p]) & (i < hi[p])
                below[p] += 1 if (inside & (v < lower[p])) else 0
                above[p] += 1 if (inside & (v > upper[p])) else 0
        changed = 0
        for p in range(nb):
            if below[p] or above[p]:
                changed += 1
                new_lo = lo[p] + below[p]
                hi[p] = max(new_lo, hi[p] - above[p])
                lo[p] = new_lo
        if changed == 0:
            break


@njit(cache=True, inline="always")
def _load(band, masks, has_masks, scales, p0, nb, tmp, kcount):
    """Copy one block into ``tmp`` scaled, with bad pixels as +inf; count the good ones."""
    n = band.shape[0]
    inf = np.float32(np.inf)
    for p in range(nb):
        kcount[p] = 0
    for i in range(n):
        sc = scales[i]
        for p in range(nb):
            v = band[i, p0 + p] * sc
            good = np.isfinite(v)
            if has_masks:
                good = good and masks[i, p0 + p] == 0
            tmp[i, p] = v if good else inf
            kcount[p] += 1 if good else 0


@njit(cache=True, inline="always")
def _sort_block(tmp, pairs, nb):
    """Apply the comparator network to every pixel of the block at once (min/max of whole rows)."""
    for c in range(pairs.shape[0]):
        i, j = pairs[c, 0], pairs[c, 1]
        for p in range(nb):
            a, b = tmp[i, p], tmp[j, p]
            tmp[i, p] = a if a < b else b
            tmp[j, p] = b if a < b else a


@njit(cache=True, inline="always")
def _revisit(band, masks, has_masks, scales, weights, rejected, want_rejected, p, vlo, vhi, tlo, thi):
    """Walk the frames of one pixel in order: weighted sums of survivors, flag what was rejected.

    Survivors are values in [vlo, vhi]; ``tlo``/``thi`` values equal to a bound were rejected by
    rank (min/max ties), taken in frame order.
    """
    wsum, wtot, w2 = 0.0, 0.0, 0.0
    for i in range(band.shape[0]):
        v = band[i, p] * scales[i]
        if not np.isfinite(v) or (has_masks and masks[i, p] != 0):
            continue
        out = v < vlo or v > vhi
        if not out and v == vlo and tlo > 0:
            out, tlo = True, tlo - 1
        elif not out and v == vhi and thi > 0:
            out, thi = True, thi - 1
        if out:
            if want_rejected:
                rejected[i, p] = 1
        else:
            w = weights[i]
            wsum += w * v
            wtot += w
            w2 += w * w
    return wsum, wtot, w2


@njit(parallel=True, cache=True)
def combine_band(band, npix, masks, has_masks, scales, weights, has_weights, rejected, want_rejected, pairs,
                 method, clip, use_median, use_mad, iterations, sigma_low, sigma_high, n_low, n_high,
                 error_scale, out_data, out_error, out_used):
    """Combine the first ``npix`` pixels of ``band[n, :]`` (float32) into ``out_*``; see ``combine``.

    The error is the survivors' std / sqrt(n_used) times ``error_scale[k]``, k the pixel's good values.
    The buffers are reused at full size for a shorter last band, so one compiled version serves all.
    """
    n = band.shape[0]
    nblocks = (npix + BLOCK - 1) // BLOCK
    sort = method == METHOD_MEDIAN or clip != CLIP_NONE or want_rejected or has_weights
    nan = np.float32(np.nan)
    for blk in prange(nblocks):
        p0 = blk * BLOCK
        nb = min(BLOCK, npix - p0)
        tmp = np.empty((n, BLOCK), np.float32)
        dev = np.empty((n if clip == CLIP_SIGMA and use_mad else 0, BLOCK), np.float64)
        kcount = np.empty(BLOCK, np.int32)
        lo = np.zeros(BLOCK, np.int32)
        hi = np.empty(BLOCK, np.int32)
        med = np.empty(BLOCK, np.float64)
        mean = np.empty(BLOCK, np.float64)
        std = np.empty(BLOCK, np.float64)
        cnt = np.empty(BLOCK, np.int32)
        _load(band, masks, has_masks, scales, p0, nb, tmp, kcount)
        if sort:
            _sort_block(tmp, pairs, nb)
            hi[:nb] = kcount[:nb]
        else:  # mean without rejection: good values are wherever tmp is finite
            hi[:nb] = n
        if clip == CLIP_SIGMA:
            _sigma_clip(tmp, dev, pairs, lo, hi, nb, use_median, use_mad, iterations, sigma_low, sigma_high,
                        med, mean, std, cnt)
        elif clip == CLIP_MINMAX:
            for p in range(nb):
                lo[p] = n_low
                hi[p] = max(n_low, kcount[p] - n_high)
        _range_mean_std(tmp, lo, hi, nb, mean, std, cnt)
        for p in range(nb):
            gp = p0 + p
            m = cnt[p]
            if m <= 0:
                out_data[gp], out_error[gp], out_used[gp] = nan, nan, 0
                if want_rejected:
                    for i in range(n):
                        if np.isfinite(band[i, gp] * scales[i]) and not (has_masks and masks[i, gp] != 0):
                            rejected[i, gp] = 1
                continue
            sd = std[p] * math.sqrt(m / (m - 1)) if m > 1 else np.nan  # unbiased variance for the error
            value, error = mean[p], sd / math.sqrt(m)
            if want_rejected or has_weights:
                k = kcount[p]
                vlo, vhi = tmp[lo[p], p], tmp[hi[p] - 1, p]
                tlo = 0
                for i in range(lo[p]):
                    tlo += 1 if tmp[i, p] == vlo else 0
                thi = 0
                for i in range(hi[p], k):
                    thi += 1 if tmp[i, p] == vhi else 0
                wsum, wtot, w2 = _revisit(band, masks, has_masks, scales, weights, rejected, want_rejected,
                                          gp, vlo, vhi, tlo, thi)
                if has_weights:
                    value, error = wsum / wtot, sd * math.sqrt(w2) / wtot
            out_data[gp] = _median(tmp, p, lo[p], hi[p]) if method == METHOD_MEDIAN else value
            out_error[gp] = error * error_scale[kcount[p]]
            out_used[gp] = m

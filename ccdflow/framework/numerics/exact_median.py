"""The exact median of a frame's good pixels without copying them: radix select in numba.

A flat's level is the median of its good pixels; ``np.median(data[good])`` first copies the
good pixels (16 MiB for a 2048x2048 float32 frame) and then runs introselect over the copy,
36-50 ms a frame and a fifth of a flat master's CPU. A float32's bits, with the sign bit flipped
for positives and every bit flipped for negatives, sort as unsigned integers in the order of
the values (-inf < ... < -0.0 < +0.0 < ... < +inf), so the k-th value can be found by counting
instead of moving: one pass histograms the top 16 bits of the qualifying pixels, which names
the bin holding rank k and the rank inside it; a second pass histograms the low 16 bits of the
pixels in that bin, which names the value. Two reads of the frame, no write, and no memory
beyond two 65536-bin histograms, whatever the frame's size; strided views (a Bayer channel)
and a mask are read where they lie. ~8.7 ms a masked 2k frame against ~55 ms.

A frame of 128k values or more reads once (:mod:`median_bracket`): a 16k sample brackets the
middle ranks, one pass counts the values below and at the bracket's ends and keeps the keys
inside it (~5 % of a flat), and a select in those names the middle keys; the same keys, so the
same value. ~3.4 ms a masked 2k frame (2.6x the two passes), ~2.5 ms a Bayer green channel
(2.0x). Should the sample mislead (the middle outside its bracket) or the bracket be too full,
the two passes run: the result is exact either way, only the time differs. Below 128k values
the sample would cost what the saved pass does.

The result is numpy's, bit for bit, not just close: ``np.median`` takes the mean of the middle
value(s), a float32 sum started at +0.0 (so a zero median is always +0.0) divided by the count
in float64 and rounded back to float32; :func:`_numpy_mean` repeats that arithmetic. The
keys order -0.0 before +0.0 where numpy's partition leaves equal zeros in any order, but the
sum from +0.0 makes either zero +0.0, so no sign is left to disagree on. Products (a master's
level, its CF_MED card) must not change by one bit when the median does.

Only float32 takes the kernel (every frame ccdflow reduces is float32); other dtypes (float64,
integers) go to ``np.median`` on the copied values, the same result by construction.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import numpy as np
from numba import njit

from ccdflow.framework.numerics.median_bracket import middle_keys

_BINS = 1 << 16
_LOW = _BINS - 1
_SIGN = 0x80000000
_ALL = 0xFFFFFFFF
_EXPONENT = 0x7F800000
_ABS = 0x7FFFFFFF
_FINITE = (0x00800000, 0xFF7FFFFF)  # the keys of -FLT_MAX and +FLT_MAX: qualifying are between
_NOT_NAN = (0x007FFFFF, 0xFF800000)  # those of -inf and +inf (NaN's lie outside either pair)
_ONE_PASS_FROM = 1 << 17  # values: below, the 16k sample costs what a pass saves


@njit(cache=True, nogil=True, inline="always")
def _key(bits):  # pragma: no cover - compiled
    """The order-preserving unsigned key of a float32's bits (as int64)."""
    b = np.int64(bits)
    return b ^ (_ALL if b & _SIGN else _SIGN)


@njit(cache=True, nogil=True, inline="always")
def _excluded(bits, finite_only):  # pragma: no cover - compiled
    """NaN always; +-inf too when ``finite_only`` (np.nanmedian keeps them, np.median of
    ``data[isfinite(data)]`` does not)."""
    magnitude = np.int64(bits) & _ABS
    return magnitude >= _EXPONENT if finite_only else magnitude > _EXPONENT


@njit(cache=True, nogil=True)
def _count_high(bits, mask, has_mask, finite_only, hist):  # pragma: no cover - compiled
    """Pass 1: add the qualifying pixels' top 16 key bits to ``hist``; their number."""
    rows, cols = bits.shape
    n = 0
    for i in range(rows):
        for j in range(cols):
            b = bits[i, j]
            if _excluded(b, finite_only) or (has_mask and mask[i, j]):
                continue
            hist[_key(b) >> 16] += 1
            n += 1
    return n


@njit(cache=True, nogil=True)
def _count_low(bits, mask, has_mask, finite_only, high, hist):  # pragma: no cover - compiled
    """Pass 2: add the low 16 key bits of the qualifying pixels whose top bits are ``high`` to
    ``hist``. Every pixel adds 0 or 1, without a branch: a few percent of a flat's pixels fall
    in the median's bin, at random, and the mispredicted branch doubled the pass's time."""
    rows, cols = bits.shape
    for i in range(rows):
        for j in range(cols):
            b = bits[i, j]
            key = _key(b)
            hit = np.int64((key >> 16) == high) & ~np.int64(_excluded(b, finite_only))
            if has_mask:  # the same test on every pixel: predicted, and the loops stay branch-free
                hit &= ~np.int64(mask[i, j])
            hist[key & _LOW] += hit & 1


@njit(cache=True, nogil=True)
def _locate(hist, rank):  # pragma: no cover - compiled
    """The bin holding the ``rank``-th (0-based) counted value, and its rank inside the bin."""
    seen = 0
    for k in range(hist.size):
        if seen + hist[k] > rank:
            return k, rank - seen
        seen += hist[k]
    return -1, -1  # unreachable when rank < the histogram's total


def _value(high: int, low: int) -> np.float32:
    """The float32 whose key is ``high << 16 | low``."""
    key = (high << 16) | low
    bits = key ^ _SIGN if key & _SIGN else key ^ _ALL
    return np.array([bits], np.uint32).view(np.float32)[0]


def _numpy_mean(a: np.float32, b: np.float32 | None) -> float:
    """``np.mean`` of the middle value(s) as ``np.median`` takes it: a float32 sum from +0.0
    (``-0.0`` comes out ``+0.0``; two huge halves overflow to inf), divided by the count as
    float64 (float32 / intp) and rounded back to float32."""
    with np.errstate(over="ignore", invalid="ignore"):
        total = np.float32(0.0) + a if b is None else np.float32(0.0) + a + b
        return float(np.float32(np.float64(total) / (1.0 if b is None else 2.0)))


def _as_2d(array: np.ndarray) -> np.ndarray:
    """The kernels' 2-D view: a row for 0-D and 1-D arrays (no copy); rows of the last axis for
    more dimensions (a copy when the array is not contiguous enough: no caller has one)."""
    if array.ndim == 2:
        return array
    return array.reshape(1, -1) if array.ndim < 2 else array.reshape(-1, array.shape[-1])


def _numpy_median(views: Sequence[np.ndarray], masks: Sequence[np.ndarray | None],
                  finite_only: bool) -> float:
    """The reference the kernel equals, used for dtypes it does not take."""
    kept = []
    for view, mask in zip(views, masks, strict=True):
        keep = np.isfinite(view) if finite_only else ~np.isnan(view)
        kept.append(view[keep & ~mask] if mask is not None else view[keep])
    values = np.concatenate(kept) if kept else np.empty(0)
    return float(np.median(values, overwrite_input=True)) if values.size else float("nan")


def median_of(views: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None,
              *, finite_only: bool = True) -> float:
    """The median of the values of ``views`` (arrays, strided views welcome) whose ``masks``
    entry (bool, same shape, True = left out; None = all in) is False, leaving out NaN and,
    when ``finite_only``, +-inf; NaN when no value is left.

    Equal bit for bit to ``float(np.median(np.concatenate([v[keep & ~m] ...])))`` with
    ``keep = np.isfinite(v)`` (``~np.isnan(v)`` when not ``finite_only``, as ``np.nanmedian``
    does), without the copy. float32 only takes the kernel; other dtypes fall back to numpy.
    """
    views = [np.asarray(v) for v in views]
    masks = [None] * len(views) if masks is None else [None if m is None else np.asarray(m, bool)
                                                          for m in masks]
    if len(masks) != len(views):
        raise ValueError("one mask (or None) per view")
    for view, mask in zip(views, masks, strict=True):
        if mask is not None and mask.shape != view.shape:
            raise ValueError(f"mask shape {mask.shape} is not its view's {view.shape}")
    if not views or any(v.dtype != np.float32 for v in views):
        return _numpy_median(views, masks, finite_only)
    # the kernels read the bits; a mask-less view gets a dummy mask it never reads
    parts = [(_as_2d(v.view(np.uint32)), np.zeros((1, 1), bool) if m is None else _as_2d(m), m is not None)
             for v, m in zip(views, masks, strict=True)]
    # one read when the sample's bracket holds the middle (median_bracket: its compaction reads
    # flag bytes as little-endian words); else, and for small frames, the two-pass radix select
    if sum(b.size for b, _, _ in parts) >= _ONE_PASS_FROM and sys.byteorder == "little":
        found = middle_keys(parts, *(_FINITE if finite_only else _NOT_NAN))
        if found is not None:
            n, key_a, key_b = found
            lower = _value(key_a >> 16, key_a & _LOW)
            return _numpy_mean(lower, None if n % 2 else _value(key_b >> 16, key_b & _LOW))
    hist = np.zeros(_BINS, np.int64)
    n = sum(_count_high(b, f, has, finite_only, hist) for b, f, has in parts)
    if n == 0:
        return float("nan")
    ranks = ((n - 1) // 2, n // 2)  # the same rank twice for an odd count
    (high_a, rank_a), (high_b, rank_b) = (_locate(hist, r) for r in ranks)
    hist_a = hist_b = np.zeros(_BINS, np.int64)
    for b, f, has in parts:
        _count_low(b, f, has, finite_only, high_a, hist_a)
    if high_b != high_a:  # the two middle values of an even count in two bins: rare, one more pass
        hist_b = np.zeros(_BINS, np.int64)
        for b, f, has in parts:
            _count_low(b, f, has, finite_only, high_b, hist_b)
    lower = _value(high_a, _locate(hist_a, rank_a)[0])
    if n % 2:
        return _numpy_mean(lower, None)
    return _numpy_mean(lower, _value(high_b, _locate(hist_b, rank_b)[0]))


def warm_up() -> None:
    """Load (or compile) the kernels both paths use for the arrays ccdflow passes: a frame with
    a mask and without, and a Bayer channel's views (their rows read whole by the one-pass
    kernel). numba's cache load holds its compiler lock: a thread runs this ahead of the work."""
    data = np.ones((2, 2), np.float32)
    median_of([data])
    frame = np.arange(1 << 18, dtype=np.float32).reshape(512, 512)
    mask = np.zeros(frame.shape, bool)
    middle_keys([(frame.view(np.uint32), mask, True)], *_FINITE)
    cut = (slice(0, None, 2), slice(1, None, 2))
    middle_keys([(frame.view(np.uint32)[cut], mask[cut], True),
                 (frame.view(np.uint32)[cut], np.zeros((1, 1), bool), False)], *_FINITE)

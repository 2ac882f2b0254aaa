"""The middle keys of a frame's good pixels in one read of it: a sample brackets them, one pass
keeps the bracket's keys, a select in that small buffer names them (issue 16).

:mod:`exact_median`'s radix select reads the frame twice (a histogram of the top 16 key bits,
then of the low 16 bits in the median's bin: ~8.7 ms a masked 2k flat). Here a sorted sample
of the qualifying keys (16k positions, one in each equal stretch of the frame at a fixed
pseudo-random offset: deterministic, and a Bayer mosaic cannot alias it) gives keys
``lo <= hi`` around the middle ranks with a margin of ``_Z`` binomial standard deviations of
the sample's middle rank. One pass then counts the qualifying pixels, those below ``lo`` and
those equal to ``lo`` and to ``hi`` (heavy ties at the bracket cost no buffer), and copies the
keys strictly between into a buffer (~5 % of a flat); each middle rank falls in one of those
classes, in the buffer ``np.partition`` names it. Nothing here is an estimate: when a rank
falls outside the bracket (a misleading sample: ~1e-9 for a random one), or the buffer could
overflow, :func:`middle_keys` returns None and the caller takes its two-pass path.

The pass works a chunk of a row at a time in two loops: the first (numba vectorises it: uint32
lanes, unsigned range tests, the four counts packed in one sum) computes the keys, counts and
flags; the second turns 64 flags into a bit mask with eight multiplies and visits only its
hits. A view of every second column (a Bayer channel) is read with a constant step of two
(vectorised; its runtime stride is not). ~3.4 ms a masked 2k flat, ~2.5 ms a Bayer green
channel (2.6x, 2.0x the radix path; bench/bench_exact_median.py). The keys are exact_median's
(the same order-preserving map of the bits), so it turns them into the very values its radix
path finds.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros as _intrinsic_trailing_zeros
from numpy.lib.stride_tricks import as_strided

_trailing_zeros: Any = _intrinsic_trailing_zeros  # count of a uint64's low zero bits (numba only)
_SIGN = 0x80000000
_ABS = 0x7FFFFFFF
_NAN = 0x7FC00000
_CHUNK = 4096  # columns a pass handles at a time: the keys and flags stay in L1
_SAMPLE = 16384  # sampled positions: the bracket's width goes as 1/sqrt of it
_Z = 6.0  # the bracket's margin in binomial standard deviations of the sample's middle rank
_SLACK = 2.0  # the buffer holds this many times the keys the sample expects in the bracket
_scratch = threading.local()  # per thread: the bracket's buffer, kept between calls (_buffer)
_WIDEST = 0.125  # a bracket holding more of the sample (few qualifying values in it): two passes


@njit(cache=True, nogil=True, inline="always")
def _key(bits):  # pragma: no cover - compiled
    """exact_median's key of a float32's bits, without a branch: flip the sign bit of a
    positive, every bit of a negative."""
    b = np.int64(bits)
    return b ^ (_SIGN | (_ABS * (b >> 31)))


@njit(cache=True, nogil=True)
def _sample(bits, mask, has_mask, kmin, kmax, m, out, c):  # pragma: no cover - compiled
    """Add to ``out[c:]`` the qualifying keys at ``m`` positions of ``bits``, one in each of
    ``m`` equal stretches of its flat index at a fixed pseudo-random offset; the new ``c``."""
    rows, cols = bits.shape
    size = rows * cols
    state = np.uint64(0x9E3779B97F4A7C15)
    for k in range(m):
        state = state * np.uint64(6364136223846793005) + np.uint64(1442695040888963407)
        u = (state >> np.uint64(11)) * (1.0 / 9007199254740992.0)
        p = min(int((k + u) * size / m), size - 1)
        i = p // cols
        j = p - i * cols
        key = _key(bits[i, j])
        if kmin <= key <= kmax and not (has_mask and mask[i, j]):
            out[c] = key
            c += 1
    return c


@njit(cache=True, nogil=True, inline="always")
def _classify(bits, mask, has_mask, every, kmin, kmax, lo, hi, keys, flags, width, acc):  # pragma: no cover
    """Count the qualifying keys of ``width`` pixels ``every`` (a literal 1 or 2 where this is
    inlined) apart (acc[0]), those below ``lo`` (1), equal to ``lo`` (2) and to ``hi`` (3);
    ``keys`` gets the keys, ``flags`` 1 where one is strictly inside. In uint32 with unsigned
    range tests and the counts packed in 16-bit fields of one sum (a chunk is < 65536 pixels):
    twice the lanes of int64 compares, one reduction instead of four."""
    span = np.uint32(kmax - kmin)
    low = np.uint32(kmin)
    lo32 = np.uint32(lo)
    hi32 = np.uint32(hi)
    above_lo = np.uint32(lo + 1)
    inner = np.uint32(hi - lo - 1 if hi > lo else 0)  # no key strictly inside [lo, lo]
    packed = np.int64(0)
    for j in range(width):
        b = bits[every * j]
        key = np.uint32(b ^ (np.uint32(_SIGN) | (np.uint32(_ABS) * (b >> np.uint32(31)))))
        q = np.uint32(key - low) <= span
        if has_mask:  # the same test on every pixel: predicted
            q &= ~mask[every * j]
        packed += np.int64(q) * (1 | (np.int64(key < lo32) << 16) | (np.int64(key == lo32) << 32)
                                 | (np.int64(key == hi32) << 48))
        keys[j] = key
        flags[j] = q & (np.uint32(key - above_lo) < inner)
    acc[0] += packed & 0xFFFF
    acc[1] += (packed >> 16) & 0xFFFF
    acc[2] += (packed >> 32) & 0xFFFF
    acc[3] += packed >> 48


@njit(cache=True, nogil=True)
def _classify_row(bits, mask, has_mask, kmin, kmax, lo, hi, keys, flags, width, acc):  # pragma: no cover
    """:func:`_classify` of consecutive pixels, compiled on its own: inlined in the pass, with
    its other loops, numba's loop was no longer vectorised (3x slower)."""
    _classify(bits, mask, has_mask, 1, kmin, kmax, lo, hi, keys, flags, width, acc)


@njit(cache=True, nogil=True)
def _classify_pairs(bits, mask, has_mask, kmin, kmax, lo, hi, keys, flags, width, acc):  # pragma: no cover
    """:func:`_classify` of every second pixel, compiled on its own (see above)."""
    _classify(bits, mask, has_mask, 2, kmin, kmax, lo, hi, keys, flags, width, acc)


@njit(cache=True, nogil=True, inline="always")
def _compact(keys, words, width, buf, c):  # pragma: no cover - compiled
    """Append the flagged ``keys`` to ``buf[c:]``; the new ``c``. ``words`` are the flags 8 at
    a time; a multiply gathers 8 flag bytes into 8 bits (bit k from byte k: little-endian), so
    the loop visits each group of 64 once and then only its hits (a few percent)."""
    for w0 in range(0, (width + 63) // 64 * 8, 8):
        hits = np.uint64(0)
        for k in range(8):
            hits |= ((words[w0 + k] * np.uint64(0x0102040810204080)) >> np.uint64(56)) << np.uint64(8 * k)
        base = w0 * 8
        while hits:
            buf[c] = keys[base + _trailing_zeros(hits)]
            c += 1
            hits &= hits - np.uint64(1)
    return c


@njit(cache=True, nogil=True)
def _bracket(bits, mask, has_mask, every, cols, kmin, kmax, lo, hi, buf, acc):  # pragma: no cover
    """The pass over ``cols`` columns of ``bits``: add their counts to ``acc[:4]`` and their
    keys strictly between ``lo`` and ``hi`` to ``buf[acc[4]:]``; ``acc[5] = 1`` and stop when
    they might not fit."""
    if acc[5]:
        return
    rows = bits.shape[0]
    contiguous = bits.strides[1] == 4 and (not has_mask or mask.strides[1] == 1)
    keys = np.empty(_CHUNK, np.uint32)
    words = np.zeros(_CHUNK // 8, np.uint64)
    flags = words.view(np.uint8)
    row_bits = np.empty(_CHUNK, np.uint32)
    row_mask = np.zeros(_CHUNK, np.bool_)
    c = acc[4]
    for i in range(rows):
        for j0 in range(0, cols, _CHUNK):
            width = min(_CHUNK, cols - j0)
            if c + width > buf.size:
                acc[5] = 1
                return
            flags[width:(width + 63) // 64 * 64] = 0  # the last group's tail: no hit
            if every == 2:  # rows of a C-contiguous array, every second column kept
                _classify_pairs(bits[i, 2 * j0:], mask[i, 2 * j0:] if has_mask else row_mask,
                                has_mask, kmin, kmax, lo, hi, keys, flags, width, acc)
            elif contiguous:
                _classify_row(bits[i, j0:j0 + width], mask[i, j0:j0 + width] if has_mask else row_mask,
                              has_mask, kmin, kmax, lo, hi, keys, flags, width, acc)
            else:
                if has_mask:  # a masked pixel's bits or'ed with a quiet NaN's are a NaN: left out
                    for j in range(width):
                        row_bits[j] = bits[i, j0 + j] | (np.uint32(mask[i, j0 + j]) * np.uint32(_NAN))
                else:
                    for j in range(width):
                        row_bits[j] = bits[i, j0 + j]
                _classify_row(row_bits, row_mask, False, kmin, kmax, lo, hi, keys, flags, width, acc)
            c = _compact(keys, words, width, buf, c)
    acc[4] = c


def _as_read(bits: np.ndarray, mask: np.ndarray, has_mask: bool,
             ) -> list[tuple[np.ndarray, np.ndarray, bool, int, int]]:
    """A part as the pass reads it: (bits, mask, has_mask, every, cols). A view of every
    second column (a Bayer channel) is read by a loop whose step of two elements is a constant
    (numba vectorises it; a strided view's runtime step it does not, and copying the view a
    chunk at a time first was slower): its rows but the last are given as one C-contiguous
    array of the whole rows they lie in, ``every = 2``; the last row, whose stretch would run
    past its array's end, as a copy. Both have a mono frame's types: numba compiles the pass
    once for all of them (~1.5 s, once per install)."""
    rows, cols = bits.shape
    step = bits.strides[0]
    if rows < 2 or cols < 1 or bits.strides[1] != 8 or step % 4 or step // 4 < 2 * cols - 1 or \
            (has_mask and (mask.strides[1] != 2 or mask.strides[0] < 2 * cols - 1)):
        return [(bits, mask, has_mask, 1, cols)]
    # writable when the view is (only read: a read-only type would be one more compiled pass)
    head_bits = as_strided(bits, (rows - 1, step // 4), (step, 4))
    head_mask = as_strided(mask, (rows - 1, mask.strides[0]), (mask.strides[0], 1)) if has_mask else mask
    tail_bits = np.ascontiguousarray(bits[rows - 1:])
    tail_mask = np.ascontiguousarray(mask[rows - 1:]) if has_mask else mask
    return [(head_bits, head_mask, has_mask, 2, cols), (tail_bits, tail_mask, has_mask, 1, cols)]


def _buffer(size: int) -> np.ndarray:
    """``size`` uint32 of this thread's kept buffer (grown when short). A new one per call
    would be new pages whenever the heap was trimmed in between (``ccdflow master`` gives
    large frees back), each zeroed by the kernel on its first touch: ~1.6 MiB a 2k flat."""
    buf = getattr(_scratch, "buf", None)
    if buf is None or buf.size < size:
        buf = _scratch.buf = np.empty(size, np.uint32)
    return buf[:size]


def middle_keys(parts: Sequence[tuple[np.ndarray, np.ndarray, bool]], kmin: int, kmax: int,
                ) -> tuple[int, int, int] | None:
    """The qualifying count and the keys at its ranks ``(n - 1) // 2`` and ``n // 2`` over
    ``parts`` (exact_median's 2-D uint32 bits, mask, has_mask), a key qualifying when in
    ``[kmin, kmax]`` and not masked; None when the sample's bracket misses or overflows (or is
    too wide to be worth the pass), for the caller's exact two-pass path."""
    total = sum(b.size for b, _, _ in parts)
    sample = np.empty(_SAMPLE + len(parts), np.int64)
    m = 0
    for b, f, has in parts:
        if b.size:
            m = _sample(b, f, has, kmin, kmax, max(1, round(_SAMPLE * b.size / total)), sample, m)
    half = _Z * math.sqrt(m) / 2 + 1
    low, high = max(int(m / 2 - half), 0), min(int(m / 2 + half) + 1, m - 1)
    if m == 0 or high - low > _WIDEST * m:
        return None
    sample = np.sort(sample[:m])
    lo, hi = int(sample[low]), int(sample[high])
    buf = _buffer(int(_SLACK * total * (high - low) / m) + 2 * _CHUNK)
    acc = np.zeros(6, np.int64)  # qualifying, below lo, equal to lo, to hi, in buf; overflow
    for b, f, has in parts:
        for rows, rows_mask, rows_has, every, cols in _as_read(b, f, has):
            _bracket(rows, rows_mask, rows_has, every, cols, kmin, kmax, lo, hi, buf, acc)
    n, below, eq_lo, eq_hi, between, overflow = (int(x) for x in acc)
    if overflow or n == 0:
        return None
    ranks = _locate((n - 1) // 2, n // 2, below, eq_lo, between, 0 if hi == lo else eq_hi)
    if ranks is None:
        return None
    inside = buf[:between]
    keys = []
    for place, r in ranks:
        if place != 1:
            keys.append(lo if place == 0 else hi)
        elif keys and ranks[0] == (place, r):  # an odd count: one middle value
            keys.append(keys[0])
        elif keys and r > 0 and ranks[0] == (1, r - 1):  # the rank after the partition's
            keys.append(int(inside[r:].min()))
        else:
            inside.partition(r)  # numpy's SIMD select for one kth (a list of two: 20x slower)
            keys.append(int(inside[r]))
    return n, keys[0], keys[1]


def _locate(rank_a: int, rank_b: int, below: int, eq_lo: int, between: int, eq_hi: int,
            ) -> list[tuple[int, int]] | None:
    """Where the two ranks fall: (0, 0) on ``lo``, (1, r) at rank r in the buffer, (2, 0) on
    ``hi``; None when one is outside the bracket."""
    places = []
    for rank in (rank_a, rank_b):
        r = rank - below
        if 0 <= r < eq_lo:
            places.append((0, 0))
        elif 0 <= r - eq_lo < between:
            places.append((1, r - eq_lo))
        elif 0 <= r - eq_lo - between < eq_hi:
            places.append((2, 0))
        else:
            return None
    return places

"""astropy's ``sigma_clipped_stats(sigma=3, maxiters=5, stdfunc="mad_std")`` median and std, to
the bit, from one sort instead of two medians per iteration.

astropy clips by keeping the values within 3 MAD-sigmas of the median, five times at most,
each iteration taking a ``nanmedian`` of the values and one of their distances to it (~11 ms
on 100,000 values). On the sorted values every clip keeps a contiguous run, its median is its
middle, and the distances to the median are two ascending runs (below it and above it) whose
median a bisection finds: the same float32 numbers, ~0.6 ms with the sort.
"""

from __future__ import annotations

import math

import numpy as np

#: astropy's ``mad_std``: the MAD of a Gaussian times this is its sigma (1 / Phi^-1(3/4)).
MAD_TO_STD = 1.482602218505602


def _middle(s: np.ndarray, lo: int, hi: int) -> np.floating:
    """The median of the sorted ``s[lo:hi]`` as numpy computes it (float32 mean of two)."""
    n, h = hi - lo, lo + (hi - lo) // 2
    return s[h] if n % 2 else (s[h - 1] + s[h]) / 2


def _mad(s: np.ndarray, lo: int, hi: int, centre: np.floating) -> np.floating:
    """The median of ``|s[lo:hi] - centre|`` in float32, ``s`` sorted: the distances below the
    centre (read downwards) and above it are ascending; bisection finds how many of the n/2
    smallest come from below."""
    i = lo + int(np.searchsorted(s[lo:hi], centre, "left"))
    n_below, n_above, n = i - lo, hi - i, hi - lo
    t = (n + 1) // 2  # the t-th smallest distance (and the next one when n is even)

    def below(j: int) -> np.floating:
        return centre - s[i - 1 - j]

    def above(j: int) -> np.floating:
        return s[i + j] - centre

    first, last = max(0, t - n_above), min(t, n_below)
    while first < last:  # the fewest taken from below such that the t taken are the smallest
        m = (first + last) // 2
        if above(t - m - 1) > below(m):
            first = m + 1
        else:
            last = m
    m = first
    taken = ([below(m - 1)] if m > 0 else []) + ([above(t - m - 1)] if t - m > 0 else [])
    if n % 2:
        return max(taken)
    following = ([below(m)] if m < n_below else []) + ([above(t - m)] if t - m < n_above else [])
    return (max(taken) + min(following)) / 2

def clipped_median_std(values: np.ndarray) -> tuple[float, float]:
    """(median, std) of the finite ``values`` (float32) after astropy's clip: 3 sigmas about the
    median, the sigma from the MAD, five iterations at most or until none is clipped. The std is
    the plain standard deviation of the values kept (as sigma_clipped_stats returns it: the MAD
    only sets the clip's width). NaN for no value."""
    v = values[np.isfinite(values)]
    if not v.size:
        return math.nan, math.nan
    s = np.sort(v)
    lo, hi = 0, s.size
    for _ in range(5):
        centre = _middle(s, lo, hi)
        sigma = _mad(s, lo, hi, centre) * MAD_TO_STD  # float32 times a Python float: float32
        new_lo = max(lo, int(np.searchsorted(s, centre - sigma * 3.0, "left")))
        new_hi = min(hi, int(np.searchsorted(s, centre + sigma * 3.0, "right")))
        if (new_lo, new_hi) == (lo, hi):
            break
        lo, hi = new_lo, new_hi
    kept = v[(v >= s[lo]) & (v <= s[hi - 1])]  # in their first order: np.std sums as astropy's
    return float(_middle(s, lo, hi)), float(np.std(kept))

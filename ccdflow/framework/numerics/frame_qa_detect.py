"""Detection for frame QA: photutils' ``detect_sources`` as runs of pixels (numba, one thread).

photutils thresholds the frame, labels it with ``scipy.ndimage.label`` (8-connected), measures
every segment's size with ``find_objects`` and relabels the ones kept: four passes over the
frame and ~90 ms at 2048 x 2048. Here one pass finds the runs of pixels above the threshold
(a block of 64 pixels without one costs a vectorised test), a union-find joins the runs that
touch (8-connected: a run and one on the row above that overlap or meet at a corner), and the
groups are numbered in the raster order of their first pixel, as ``ndimage.label`` numbers them,
so the sources, their sizes and their order are photutils'.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True, nogil=True, inline="always")
def _scan(row, bad, threshold, start, stop, first, i, runs, n):  # pragma: no cover - compiled
    """Columns ``start:stop`` of row ``i`` pixel by pixel, ``first`` the start of the run in
    progress (-1: none); the runs ended are appended to ``runs`` from its ``n``-th. Returns the
    run in progress and the new count."""
    for j in range(start, stop):
        hit = row[j] > threshold and not bad[j]
        if hit and first < 0:
            first = j
        elif not hit and first >= 0:
            runs[n, 0], runs[n, 1], runs[n, 2] = i, first, j
            n += 1
            first = -1
    return first, n


@njit(cache=True, nogil=True)
def _row_runs(row, bad, threshold, i, runs, n):  # pragma: no cover - compiled
    """Row ``i``'s runs appended to ``runs`` from its ``n``-th (room for them made by the
    caller); the new count. Pixel by pixel only in the blocks of 64 with a hit or a run open."""
    nx = row.size
    whole = nx // 64 * 64
    first = -1  # the start of the run in progress
    for start in range(0, whole, 64):
        found = 0
        for j in range(64):  # a constant count (and a loop to ``whole``): ~6x faster
            found += (row[start + j] > threshold) & (not bad[start + j])
        if found or first >= 0:
            first, n = _scan(row, bad, threshold, start, start + 64, first, i, runs, n)
    first, n = _scan(row, bad, threshold, whole, nx, first, i, runs, n)
    if first >= 0:
        runs[n, 0], runs[n, 1], runs[n, 2] = i, first, nx
        n += 1
    return n


@njit(cache=True, nogil=True)
def _runs(smooth, defect, threshold):  # pragma: no cover - compiled
    """The runs (row, start, stop) of ``smooth > threshold`` (float32, as numpy compares a
    float32 image with a Python float) without a defect, in raster order."""
    ny, nx = smooth.shape
    runs = np.empty((max(1024, 2 * nx), 3), np.int64)
    n = 0
    for i in range(ny):
        if runs.shape[0] - n < (nx + 1) // 2:  # room for a row's most runs (every other pixel)
            runs = np.concatenate((runs, np.empty_like(runs)))
        n = _row_runs(smooth[i], defect[i], threshold, i, runs, n)
    return runs[:n]


@njit(cache=True, nogil=True, inline="always")
def _root(parent, k):  # pragma: no cover - compiled
    """The root of run ``k``'s group, halving the path on the way."""
    while parent[k] != k:
        parent[k] = parent[parent[k]]
        k = parent[k]
    return k


@njit(cache=True, nogil=True)
def _groups(runs):  # pragma: no cover - compiled
    """Each run's group number, 1.. in the raster order of the groups' first runs, and their
    number. A run touches one on the row above when their columns overlap or meet at a corner;
    a group's root is its first run (the smaller root wins each join)."""
    n = runs.shape[0]
    parent = np.arange(n)
    above = 0  # the first run of the row above that can still touch a run of this row
    k = 0
    while k < n:
        row, begin = runs[k, 0], k
        while k < n and runs[k, 0] == row:
            k += 1
        while above < begin and runs[above, 0] < row - 1:
            above += 1
        first_above = above
        for r in range(begin, k):  # this row's runs against the row above's, both sorted
            start, stop = runs[r, 1], runs[r, 2]
            while first_above < begin and runs[first_above, 2] < start:
                first_above += 1  # ends left of this run's corner: touches no later run either
            a = first_above
            while a < begin and runs[a, 1] <= stop:
                x, y = _root(parent, a), _root(parent, r)
                if x < y:
                    parent[y] = x
                elif y < x:
                    parent[x] = y
                a += 1
        above = begin
    group = np.zeros(n, np.int64)
    count = 0
    for r in range(n):
        root = _root(parent, r)
        if root == r:
            count += 1
            group[r] = count
        else:
            group[r] = group[root]
    return group, count


@njit(cache=True, nogil=True)
def label_sources(smooth, defect, threshold, data, level, unc, labels):  # pragma: no cover
    """``labels`` (int32 zeros) = the 8-connected groups of ``smooth > threshold`` without a
    defect, numbered as ``scipy.ndimage.label`` does; returns their number and, per group
    (index 0 unused): its pixels, those with a positive ``unc`` (``unc`` empty: 0), its box
    (row start, stop, column start, stop) and its peak of ``data - level`` (not below 0: photutils'
    ``np.maximum.at`` on zeros)."""
    runs = _runs(smooth, defect, threshold)
    group, count = _groups(runs)
    size = np.zeros(count + 1, np.int64)
    positive = np.zeros(count + 1, np.int64)
    box = np.empty((count + 1, 4), np.int64)
    box[:, 0], box[:, 1], box[:, 2], box[:, 3] = labels.shape[0], -1, labels.shape[1], -1
    peak = np.zeros(count + 1, np.float32)
    with_unc = unc.shape == labels.shape
    for r in range(runs.shape[0]):
        g, i, start, stop = group[r], runs[r, 0], runs[r, 1], runs[r, 2]
        size[g] += stop - start
        box[g, 0], box[g, 1] = min(box[g, 0], i), max(box[g, 1], i + 1)
        box[g, 2], box[g, 3] = min(box[g, 2], start), max(box[g, 3], stop)
        best = peak[g]
        for j in range(start, stop):
            labels[i, j] = g
            best = max(best, data[i, j] - level)
        peak[g] = best
        if with_unc:
            for j in range(start, stop):
                positive[g] += unc[i, j] > 0
    return count, size, positive, box, peak

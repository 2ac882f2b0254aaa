"""The pixel stencils of L.A.Cosmic, on the frame's own grid (numba, rows over both cores).

astroscrappy block-replicates the frame 2x2 (4x the memory), convolves with the Laplacian
(0 -1 0 / -1 4 -1 / 0 -1 0), clips below 0 and averages the 2x2 blocks back. Each of the four
sub-pixels of pixel (j, i) sees the pixel itself twice (its block neighbours) and one
neighbour across each of two block edges, so the whole chain is a 5-point stencil on the
original grid. The float32 operations keep astroscrappy's order (4c, then the four
neighbours grouped as its -ffast-math build groups them: ((4c - right) - left) - (down + up),
its own order on each outer row and column, the top row in double) so the results are
bit-identical; tests/test_lacosmic_engine.py holds the build to it.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange


@njit(cache=True)
def _at(x, y2, x2):  # pragma: no cover - compiled
    """Value of the 2x block-replicated frame at (y2, x2)."""
    return x[y2 // 2, x2 // 2]


@njit(cache=True)
def _edge_sub_laplacian(x, y2, x2, ny2, nx2):  # pragma: no cover - compiled
    """Laplacian of the replicated frame at (y2, x2) anywhere (used for the frame's outer pixels,
    whose sub-pixels may be inside), grouped as astroscrappy's build computes them (measured
    against its laplaceconvolve: tests/test_lacosmic_engine.py)."""
    four = np.float32(4.0) * _at(x, y2, x2)
    if y2 == 0:  # top row and its corners: double, rounded once
        total = np.float64(four)
        if x2 > 0:
            total -= np.float64(_at(x, 0, x2 - 1))
        if x2 < nx2 - 1:
            total -= np.float64(_at(x, 0, x2 + 1))
        return np.float32(total - np.float64(_at(x, 1, x2)))
    up = _at(x, y2 - 1, x2)
    if y2 == ny2 - 1:
        if x2 == 0:
            return four - (_at(x, y2, 1) + up)
        if x2 == nx2 - 1:
            return (four - _at(x, y2, x2 - 1)) - up
        return (four - up) - (_at(x, y2, x2 + 1) + _at(x, y2, x2 - 1))
    down = _at(x, y2 + 1, x2)
    if 0 < x2 < nx2 - 1:
        return ((four - _at(x, y2, x2 + 1)) - _at(x, y2, x2 - 1)) - (down + up)
    if x2 == 0:
        return (four - _at(x, y2, 1)) - (down + up)
    return (four - down) - (_at(x, y2, x2 - 1) + up)


@njit(cache=True)
def _positive(v):  # pragma: no cover - compiled
    return v if not v < 0 else np.float32(0.0)


@njit(cache=True)
def _rebinned(tl, bl, br, tr):  # pragma: no cover - compiled
    """astroscrappy's 2x2 average of the clipped Laplacian, its sums paired as it pairs them."""
    return ((_positive(tl) + _positive(br)) + (_positive(bl) + _positive(tr))) * np.float32(0.25)


@njit(cache=True, parallel=True)
def laplacian_to_noise(x, noise, out):  # pragma: no cover - compiled
    """``out`` = rebinned clipped Laplacian of the replicated ``x`` / (2 ``noise``) (float32)."""
    ny, nx = x.shape
    ny2, nx2 = 2 * ny, 2 * nx
    two = np.float32(2.0)
    for j in prange(ny):
        inner = 0 < j < ny - 1
        for i in range(nx):
            c = x[j, i]
            if inner and 0 < i < nx - 1:
                left, right, up, down = x[j, i - 1], x[j, i + 1], x[j - 1, i], x[j + 1, i]
                four = np.float32(4.0) * c
                tl = ((four - c) - left) - (c + up)  # ((4c - right) - left) - (down + up)
                tr = ((four - right) - c) - (c + up)
                bl = ((four - c) - left) - (down + c)
                br = ((four - right) - c) - (down + c)
            else:
                tl = _edge_sub_laplacian(x, 2 * j, 2 * i, ny2, nx2)
                tr = _edge_sub_laplacian(x, 2 * j, 2 * i + 1, ny2, nx2)
                bl = _edge_sub_laplacian(x, 2 * j + 1, 2 * i, ny2, nx2)
                br = _edge_sub_laplacian(x, 2 * j + 1, 2 * i + 1, ny2, nx2)
            out[j, i] = _rebinned(tl, bl, br, tr) / (two * noise[j, i])

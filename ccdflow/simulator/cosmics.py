"""Cosmic rays: single-pixel hits, small clusters and oblique tracks, added after the flat."""

from __future__ import annotations

import numpy as np

KIND_ODDS = (0.4, 0.3, 0.3)  # single pixel, cluster, track
TRACK_LENGTH = (3, 21)  # pixels, half-open


def expected_events(rate_per_mpix_s: float, exptime: float, shape: tuple[int, int]) -> float:
    return rate_per_mpix_s * exptime * shape[0] * shape[1] / 1e6


def cosmic_rays(shape: tuple[int, int], n_events: int, rng: np.random.Generator,
                energy: tuple[float, float]) -> np.ndarray:
    """Deposited charge (e-) of `n_events` events: the first pixel of each gets a charge drawn
    log-uniform in `energy`, the others of a cluster or track 0.5-1 times that."""
    ny, nx = shape
    image = np.zeros(shape, np.float32)
    if n_events == 0:
        return image
    kind = rng.choice(3, n_events, p=KIND_ODDS)
    size = np.ones(n_events, np.int64)
    size[kind == 1] = rng.integers(2, 6, int((kind == 1).sum()))
    size[kind == 2] = rng.integers(*TRACK_LENGTH, int((kind == 2).sum()))
    event = np.repeat(np.arange(n_events), size)
    step = np.arange(event.size) - np.repeat(np.cumsum(size) - size, size)  # 0.. within event

    y0, x0 = rng.uniform(0, ny, n_events), rng.uniform(0, nx, n_events)
    # tracks advance one pixel per step along their dominant axis, so no pixel repeats
    angle = rng.uniform(0, np.pi, n_events)
    dy, dx = np.sin(angle), np.cos(angle)
    norm = np.maximum(np.abs(dy), np.abs(dx))
    dy, dx = dy / norm, dx / norm
    ys, xs = y0[event] + step * dy[event], x0[event] + step * dx[event]
    # clusters: random neighbours of the first pixel instead of a line
    in_cluster = (kind[event] == 1) & (step > 0)
    ys[in_cluster] = y0[event][in_cluster] + rng.integers(-1, 2, int(in_cluster.sum()))
    xs[in_cluster] = x0[event][in_cluster] + rng.integers(-1, 2, int(in_cluster.sum()))

    log_low, log_high = np.log(energy)
    amp = np.exp(rng.uniform(log_low, log_high, n_events))
    charge = amp[event] * np.where(step == 0, 1.0, rng.uniform(0.5, 1.0, event.size))
    iy, ix = np.floor(ys).astype(np.int64), np.floor(xs).astype(np.int64)
    inside = (iy >= 0) & (iy < ny) & (ix >= 0) & (ix < nx)
    np.add.at(image, (iy[inside], ix[inside]), charge[inside].astype(np.float32))
    return image

"""Combine a stack of frames pixel by pixel, in row bands to bound memory.

Rejection rule for ``clip='sigma'``: one pass, like ccdproc (not astropy's iterative
``sigma_clip``): centre = median, spread = MAD-based std, pixels outside
[centre - low*spread, centre + high*spread] are dropped, the survivors averaged.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from ccdflow.framework.errors import AlgorithmError

MAD_TO_STD = 1.4826


@dataclass
class Combined:
    """Result of a combine: the image, its standard error and how many inputs each pixel used."""

    data: np.ndarray
    error: np.ndarray
    n_used: np.ndarray


def combine(
    frames: Sequence[np.ndarray],
    *,
    method: Literal["median", "mean"] = "median",
    clip: Literal["sigma", "minmax", "none"] = "sigma",
    sigma_low: float = 3.0,
    sigma_high: float = 3.0,
    n_low: int = 1,
    n_high: int = 1,
    scales: Sequence[float] | None = None,
    masks: Sequence[np.ndarray | None] | None = None,
    band_bytes: int = 64 * 2**20,
) -> Combined:
    """Combine equally-shaped 2-D frames; masked pixels never contribute."""
    if not frames:
        raise AlgorithmError("nothing to combine: no input frames")
    shape = frames[0].shape
    if any(f.shape != shape for f in frames):
        shapes = sorted({f.shape for f in frames})
        raise AlgorithmError(f"cannot combine frames of different shapes: {shapes}")
    n = len(frames)
    if clip == "minmax" and n - n_low - n_high < 1:
        raise AlgorithmError(f"minmax rejection of {n_low}+{n_high} leaves nothing of {n} frames")
    scale = np.ones(n, np.float32) if scales is None else np.asarray(scales, np.float32)
    out = Combined(np.empty(shape, np.float32), np.empty(shape, np.float32), np.empty(shape, np.int16))
    rows = max(1, band_bytes // max(1, n * shape[1] * 4 * 3))
    for r0 in range(0, shape[0], rows):
        band = slice(r0, min(shape[0], r0 + rows))
        stack = np.stack([np.asarray(f[band], np.float32) for f in frames]) * scale[:, None, None]
        bad = ~np.isfinite(stack)
        if masks is not None:
            for i, m in enumerate(masks):
                if m is not None:
                    bad[i] |= np.asarray(m[band], bool)
        stack[bad] = np.nan
        if clip == "sigma":
            centre = np.nanmedian(stack, axis=0)
            spread = MAD_TO_STD * np.nanmedian(np.abs(stack - centre), axis=0)
            with np.errstate(invalid="ignore"):
                reject = (stack < centre - sigma_low * spread) | (stack > centre + sigma_high * spread)
            stack[reject] = np.nan
        elif clip == "minmax":
            order = np.sort(np.where(np.isnan(stack), np.inf, stack), axis=0)
            stack = order[n_low : n - n_high]
            stack[~np.isfinite(stack)] = np.nan
        used = np.sum(~np.isnan(stack), axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            value = np.nanmedian(stack, axis=0) if method == "median" else np.nanmean(stack, axis=0)
            err = np.nanstd(stack, axis=0, ddof=1) / np.sqrt(np.maximum(used, 1))
        if method == "median":
            err *= np.float32(1.2533)  # efficiency of the median for Gaussian noise
        out.data[band], out.error[band], out.n_used[band] = value, err, used
    return out

"""Fringe step: fit how much of the fringe frame a science frame holds, and subtract it.

The fringe frame is the pattern per unit sky (``fringe_frame.py``); a science frame holds it
times a scale near its own sky level (the line emission changes through the night, so the
scale is fitted, not taken from the sky level). The model is ``frame = offset + scale *
fringe`` over the frame's good pixels, fitted by least squares with outliers clipped.

Both images are first averaged in small blocks over the same pixels. That keeps the model
exact (an average of ``offset + scale * fringe`` is ``offset + scale *`` the average) while
cutting the fringe frame's own noise: with noise in the template, least squares underestimates
the scale by the ratio of that noise's variance to the template's (errors in variables), about
2 % for a master of five night-sky frames; blocks of 8 x 8 make it 0.03 %. Blocks much smaller
than the spacing of the bands (tens of pixels) keep the pattern. Stars and cosmic rays raise a
block far above the model, and are clipped.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.plugin import (
    AlgorithmError,
    NoWorkError,
    Step,
    StepContext,
    StepParams,
    UnprocessableInputError,
    subtract_scaled,
)

#: The fitted scale, in the frame's unit per unit of the fringe frame (about the sky level).
SCALE_CARD = "CF_FRSCL"


class FringeParams(StepParams):
    filters: list[str] = Field(
        ["R", "I", "Z", "Y", "r", "i", "z", "y"],
        description="Filters that fringe: a frame in one of them needs a fringe frame of its "
                    "filter; frames in other filters skip the step.")
    block: int = Field(
        8, ge=1, description="Side in pixels of the blocks averaged in frame and fringe frame "
                             "alike before the fit (see the module's docstring).")
    clip: float = Field(
        3.0, gt=0, description="Blocks further than this many robust sigma from the fit "
                               "(stars, cosmic rays) are left out of it.")
    iterations: int = Field(5, ge=1, description="Fit-and-clip rounds at most.")


def block_means(data: np.ndarray, good: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Means of ``data`` over the ``good`` pixels of each ``block`` x ``block`` block (rows and
    columns beyond the last whole block are left out), and which blocks are at least half good."""
    ny, nx = (n - n % block for n in data.shape)
    shape = (ny // block, block, nx // block, block)
    kept = good[:ny, :nx]
    sums = np.where(kept, data[:ny, :nx], 0).astype(np.float64).reshape(shape).sum(axis=(1, 3))
    counts = kept.reshape(shape).sum(axis=(1, 3))
    usable = counts >= block * block / 2
    return np.where(usable, sums / np.maximum(counts, 1), 0.0).ravel(), usable.ravel()


def fit_fringe(data: np.ndarray, fringe: np.ndarray, good: np.ndarray, block: int = 8,
               clip: float = 3.0, iterations: int = 5) -> tuple[float, float, int]:
    """(scale, offset, blocks used) of ``data = offset + scale * fringe`` on block means."""
    y, usable = block_means(data, good, block)
    x, _ = block_means(fringe, good, block)
    use = usable.copy()
    scale = offset = 0.0
    for _ in range(iterations):
        if use.sum() < 10:
            raise AlgorithmError(f"only {int(use.sum())} blocks of {block}x{block} good pixels left "
                                 "to fit the fringe scale; at least 10 are needed")
        xm, ym = x[use].mean(), y[use].mean()
        spread = float(np.sum((x[use] - xm) ** 2))
        if spread <= 0:
            raise AlgorithmError("the fringe frame is flat over the frame's good pixels; no "
                                 "fringe scale can be fitted")
        scale = float(np.sum((x[use] - xm) * (y[use] - ym)) / spread)
        offset = float(ym - scale * xm)
        residual = y - offset - scale * x
        sigma = 1.4826 * float(np.median(np.abs(residual[use] - np.median(residual[use]))))
        keep = usable & (np.abs(residual) <= clip * sigma) if sigma > 0 else use
        if np.array_equal(keep, use):
            break
        use = keep
    return scale, offset, int(use.sum())


class FringeSubtractor(Step[FringeParams]):
    """Subtracts the fringe frame scaled to the frame: the fit's offset (the sky) stays."""

    name = "fringe"
    Params = FringeParams
    optional_calibrations = ("fringe",)  # blue filters have none; red ones must (checked in run)
    description = "Fit and subtract the fringe frame of the frame's (red) filter"

    def run(
        self,
        ccd: CCDData,
        params: FringeParams,
        calibrations: Mapping[str, CCDData],
        context: StepContext,
    ) -> CCDData:
        band = context.meta.filter
        if band not in params.filters:
            raise NoWorkError(f"filter {band!r} does not fringe (fringe.filters: "
                              f"{', '.join(params.filters)})")
        fringe = calibrations.get("fringe")
        path = str(context.meta.path)
        if fringe is None:
            raise UnprocessableInputError(f"filter {band!r} fringes but no fringe frame of that "
                                          "filter was found", path=path)
        if fringe.data.shape != ccd.data.shape:
            raise UnprocessableInputError(f"fringe frame is {fringe.data.shape}, the frame "
                                          f"{ccd.data.shape}; expected the same shape", path=path)
        good = np.isfinite(ccd.data) & np.isfinite(fringe.data)
        for mask in (ccd.mask, fringe.mask):
            if mask is not None:
                good &= ~np.asarray(mask, bool)
        scale, _, n_blocks = fit_fringe(ccd.data, fringe.data, good, params.block, params.clip,
                                        params.iterations)
        # ccdflow's arithmetic: variances add (the fringe frame's times scale**2), and pixels
        # the fringe frame has no value for come out masked rather than silently uncorrected
        out = subtract_scaled(ccd, fringe, scale, what="fringe frame", path=path)
        out.header[SCALE_CARD] = (round(scale, 4), "fringe frame scale fitted (unit per unit)")
        out.header["CF_FRNBL"] = (n_blocks, f"{params.block}x{params.block} blocks in the fit")
        return out

"""Overscan subtraction, amplifier by amplifier."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from astropy.nddata import CCDData
from astropy.stats import sigma_clipped_stats
from pydantic import Field

from ccdflow.framework.engine.errors import NoWorkError, UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.headers.geometry import amplifier_regions


class OverscanParams(StepParams):
    method: Literal["median", "mean", "clipped_mean", "line_median", "poly"] = Field(
        "line_median",
        description="Level estimate: one number (median, mean, clipped_mean) or one value per "
        "line along the readout direction (line_median, or a poly fit of it).",
    )
    poly_order: int = Field(3, ge=0, le=10, description="Order of the poly fit along lines.")
    sigma: float = Field(3.0, gt=0, description="Clipping threshold for clipped_mean.")


def overscan_model(strip: np.ndarray, method: str, poly_order: int = 3, sigma: float = 3.0) -> np.ndarray:
    """Overscan level per line of ``strip`` (lines along axis 0), or a 0-d value.

    The strip is oriented so axis 0 runs along the readout direction: for a column
    overscan at the side of the frame that is one value per row.
    """
    if method == "median":
        return np.asarray(np.median(strip), dtype=np.float32)
    if method == "mean":
        return np.asarray(np.mean(strip), dtype=np.float32)
    if method == "clipped_mean":
        return np.asarray(sigma_clipped_stats(strip, sigma=sigma)[0], dtype=np.float32)
    lines = np.median(strip, axis=1)
    if method == "line_median":
        return lines.astype(np.float32)
    x = np.linspace(-1.0, 1.0, lines.size)
    good = np.isfinite(lines)  # a line of NaN overscan pixels (see finite_model) has no level
    if good.sum() < 1:
        return lines.astype(np.float32)
    fit = np.polynomial.Polynomial.fit(x[good], lines[good], deg=min(poly_order, int(good.sum()) - 1))
    return fit(x).astype(np.float32)


def finite_model(strip: np.ndarray, method: str, **options) -> np.ndarray:
    """:func:`overscan_model` leaving out NaN/inf overscan pixels (``read_ccd`` turns masked raw
    pixels into NaN); one NaN used to make the level, and a header card, NaN. The plain model is
    tried first: the usual strip is all finite, and NaN-aware statistics are several times slower."""
    level = overscan_model(strip, method, **options)
    if np.isfinite(level).all():
        return level
    good = np.isfinite(strip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lines with no finite pixel stay NaN
        if method in ("median", "mean", "clipped_mean"):
            return overscan_model(strip[good], method, **options) if good.any() else level
        lines = np.nanmedian(np.where(good, strip, np.nan), axis=1)
    return overscan_model(lines[:, None], method, **options)


def subtract_overscan(
    data: np.ndarray, overscan: tuple[slice, slice], target: tuple[slice, slice],
    out: np.ndarray | None = None, **options
) -> float:
    """Subtract the overscan model from ``target``, in place or into ``out`` (one pass instead of
    a copy and a subtraction); returns the mean level removed."""
    strip = data[overscan]
    by_rows = strip.shape[0] >= strip.shape[1]  # side overscan: one value per row
    oriented = strip if by_rows else strip.T
    level = finite_model(oriented, **options)
    if not np.isfinite(level).any():
        raise UnprocessableInputError("the overscan region holds no finite pixel; no level to subtract")
    if level.ndim == 0:
        model = level
    elif by_rows:
        rows = np.arange(data.shape[0])[target[0]]
        model = level[np.clip(rows - overscan[0].start, 0, level.size - 1), None]
    else:
        cols = np.arange(data.shape[1])[target[1]]
        model = level[None, np.clip(cols - overscan[1].start, 0, level.size - 1)]
    if out is None:
        data[target] -= model
    else:
        np.subtract(data[target], model, out=out[target])
    return float(np.nanmean(level))  # lines without a level leave NaN rows (masked downstream)


class OverscanSubtractor(Step[OverscanParams]):
    name = "overscan"
    Params = OverscanParams
    description = "Subtract the overscan level of each amplifier."

    def run(self, ccd: CCDData, params: OverscanParams, calibrations, context: StepContext) -> CCDData:
        amps = amplifier_regions(context.instrument, ccd.header, ccd.shape, context.meta.path)
        if all(a.overscan is None for a in amps):
            raise NoWorkError("no overscan section for any amplifier")
        whole = (slice(0, ccd.shape[0]), slice(0, ccd.shape[1]))
        # One amplifier of float32: the frame minus its model written straight into a new
        # array. Several: a copy, then each amplifier in place. The input frame is left as it is.
        one_pass = len(amps) == 1 and ccd.data.dtype == np.float32
        data = np.empty(ccd.shape, np.float32) if one_pass else np.array(ccd.data, np.float32)
        source, into = (ccd.data, data) if one_pass else (data, None)
        out = CCDData(data, unit=ccd.unit, header=header_of(ccd), mask=ccd.mask,
                      uncertainty=ccd.uncertainty, wcs=ccd.wcs)
        for amp in amps:
            if amp.overscan is None:
                continue
            level = subtract_overscan(
                source, amp.overscan, whole if len(amps) == 1 else amp.trim, into,
                method=params.method, poly_order=params.poly_order, sigma=params.sigma,
            )
            out.header[f"CF_OS{amp.name[:4]}"] = (round(level, 3), f"mean overscan {amp.overscan_text}")
        return out

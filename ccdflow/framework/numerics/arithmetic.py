"""Frame arithmetic with ccdproc's error model, in float32 fused kernels (ccdproc works in
float64 through astropy's NDData propagation, ~25x slower per frame on 2048x2048)."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.step import header_of
from ccdflow.framework.numerics.kernels import divide_arrays, subtract_scaled_arrays


def _check_shapes(ccd: CCDData, cal: CCDData, what: str, path: str | None) -> None:
    if ccd.shape != cal.shape:
        raise UnprocessableInputError(
            f"{what} shape {cal.shape} does not match the frame {ccd.shape} "
            "(was the frame trimmed like the master?)",
            path=path,
        )


def _std(ccd: CCDData) -> np.ndarray | None:
    return None if ccd.uncertainty is None else np.asarray(ccd.uncertainty.array, np.float32)


def _with_master_mask(ccd: CCDData, flags: np.ndarray | None, cal: CCDData
                      ) -> dict[str, np.ndarray | None]:
    """``mask`` and ``flags`` for the result: the frame's DQ bits (``flags``) plus NO_DATA where
    the master has none (its mask, whatever its reasons: in the frame the reason is the missing
    calibration). Bits left as the frame had them keep its mask: no new boolean plane."""
    if cal.mask is not None:
        flags = dq.flag(flags, np.asarray(cal.mask, bool), dq.NO_DATA)
    if flags is None:
        return {"mask": None, "flags": None}
    if flags is ccd.flags and ccd.mask is not None:  # dq.of checked that they agree
        return {"mask": ccd.mask, "flags": flags}
    mask = flags != 0
    dq.remember_pair(mask, flags)
    return {"mask": mask, "flags": flags}


def subtract_scaled(
    ccd: CCDData, cal: CCDData, scale: float = 1.0, *, what: str = "calibration",
    path: str | None = None, in_place: bool = False,
) -> CCDData:
    """``ccd - scale * cal``; variances add (the calibration's scaled by scale**2).

    ``in_place``: the frame's data and uncertainty arrays may hold the results (a step passes
    ``context.owns_pixels``); the calibration is never written."""
    _check_shapes(ccd, cal, what, path)
    data, std = subtract_scaled_arrays(ccd.data, _std(ccd), cal.data, _std(cal), scale, in_place)
    return CCDData(
        data, unit=ccd.unit, header=header_of(ccd), **_with_master_mask(ccd, dq.of(ccd), cal),
        uncertainty=None if std is None else StdDevUncertainty(std, copy=False),
    )


def divide_by_flat(
    ccd: CCDData, flat: CCDData, min_value: float, *, path: str | None = None, in_place: bool = False
) -> tuple[CCDData, int]:
    """``ccd / flat`` where flat >= min_value; elsewhere the pixel is flagged FLAT_LOW and left
    undivided.

    Relative errors add in quadrature. Returns the product and the number of masked pixels.
    ``in_place`` as for :func:`subtract_scaled`.
    """
    _check_shapes(ccd, flat, "flat", path)
    data, std, bad, n_bad = divide_arrays(ccd.data, _std(ccd), flat.data, _std(flat), min_value,
                                          in_place)
    if n_bad == bad.size:
        f = np.asarray(flat.data, np.float32)
        raise UnprocessableInputError(
            f"flat has no pixel >= {min_value} (median {np.nanmedian(f):.4g}); "
            "is it normalised, or a zero/empty flat?", path=path,
        )
    flags = dq.flag(dq.of(ccd), bad if n_bad else None, dq.FLAT_LOW)
    result = CCDData(data, unit=ccd.unit, header=header_of(ccd), **_with_master_mask(ccd, flags, flat),
                     uncertainty=None if std is None else StdDevUncertainty(std, copy=False))
    return result, n_bad

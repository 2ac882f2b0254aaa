"""Flat-field division by the normalised master flat."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework.builders.channels import normalise_master
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams
from ccdflow.framework.numerics.arithmetic import divide_by_flat


class FlatParams(StepParams):
    min_value: float = Field(
        0.2, ge=0, description="Master flat pixels below this value (the master has a median of 1) are "
        "masked in the frame, not divided by."
    )


def _normalised(flat: CCDData, path: str | None) -> CCDData:
    """A master flat made elsewhere, brought to 1 as ccdflow's own are: per colour channel on a
    Bayer sensor (one global median would tint the colours), else by its median."""
    mask = np.zeros(flat.shape, bool) if flat.mask is None else np.asarray(flat.mask, bool)
    error = np.zeros(flat.shape, np.float32) if flat.uncertainty is None else flat.uncertainty.array
    data, error = normalise_master(np.asarray(flat.data, np.float32), np.asarray(error, np.float32),
                                   mask, flat.header, f"the master flat given to {path}")
    return CCDData(data, unit=flat.unit, mask=flat.mask, header=flat.header,
                   uncertainty=None if flat.uncertainty is None
                   else flat.uncertainty.__class__(error, copy=False))


class FlatDivider(Step[FlatParams]):
    name = "flat"
    Params = FlatParams
    calibrations = ("flat",)
    description = "Divide by the master flat of the frame's filter."

    def run(self, ccd: CCDData, params: FlatParams, calibrations, context: StepContext) -> CCDData:
        flat = calibrations["flat"]
        # a 1/64 sample decides whether the master is normalised (47 ms -> 1 ms per 2048^2
        # frame); the exact median is computed only when it has to be divided out
        median = float(np.nanmedian(flat.data[::8, ::8]))
        if np.isfinite(median) and median > 0 and abs(median - 1.0) > 0.05:
            median = float(np.nanmedian(flat.data))
        if not np.isfinite(median) or median <= 0:
            raise UnprocessableInputError(
                f"master flat median is {median:.4g}; cannot normalise", path=context.meta.path
            )
        if abs(median - 1.0) > 0.05:  # accept un-normalised masters by normalising here
            flat = _normalised(flat, context.meta.path)
        out, masked = divide_by_flat(ccd, flat, params.min_value, path=context.meta.path,
                                     in_place=context.owns_pixels)
        out.header["CF_FLMSK"] = (masked, "pixels masked where the flat is too low")
        return out

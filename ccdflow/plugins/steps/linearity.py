"""Non-linearity correction: a polynomial from the instrument config applied to level-free ADU."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from pydantic import Field

from ccdflow.framework.engine.errors import NoWorkError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of


class LinearityParams(StepParams):
    coefficients: list[float] | None = Field(
        None, description="c0, c1, c2... (linear = sum c_i x**i); None: the instrument's `linearity`.",
    )


def linearize(data: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """``sum c_i x**i`` by Horner's rule in float32 (no float64 copy of the frame)."""
    x = np.asarray(data, np.float32)
    out = np.full(x.shape, np.float32(coefficients[-1]), np.float32)
    for c in reversed(coefficients[:-1]):
        out *= x
        out += np.float32(c)
    return out


def derivative(data: np.ndarray, coefficients: list[float]) -> np.ndarray:
    """d(linear)/dx, which scales the uncertainty."""
    slope = [i * c for i, c in enumerate(coefficients)][1:] or [0.0]
    return linearize(data, slope)


class LinearityCorrector(Step[LinearityParams]):
    """Place after overscan (the polynomial is defined on signal, not on signal + bias level)
    and before gain (it is defined in ADU)."""

    name = "linearity"
    Params = LinearityParams
    description = "Correct the detector's non-linearity with the instrument's polynomial."

    def run(self, ccd: CCDData, params: LinearityParams, calibrations, context: StepContext) -> CCDData:
        coefficients = params.coefficients if params.coefficients is not None \
            else list(context.instrument.linearity)
        if not coefficients or coefficients == [0.0, 1.0]:
            raise NoWorkError("no linearity correction configured (instrument `linearity` is empty)")
        uncertainty = ccd.uncertainty
        if uncertainty is not None:
            std = np.asarray(uncertainty.array, np.float32) * np.abs(derivative(ccd.data, coefficients))
            uncertainty = StdDevUncertainty(std, copy=False)
        header = header_of(ccd)
        header["CF_LINC"] = (",".join(f"{c:.6g}" for c in coefficients), "linearity polynomial c0,c1,...")
        return CCDData(linearize(ccd.data, coefficients), unit=ccd.unit, header=header, mask=ccd.mask,
                       uncertainty=uncertainty)

"""Master bias subtraction."""

from __future__ import annotations

from astropy.nddata import CCDData

from ccdflow.framework.engine.step import Step, StepContext, StepParams
from ccdflow.framework.numerics.arithmetic import subtract_scaled


class BiasSubtractor(Step[StepParams]):
    name = "bias"
    Params = StepParams
    calibrations = ("bias",)
    description = "Subtract the master bias."

    def run(self, ccd: CCDData, params: StepParams, calibrations, context: StepContext) -> CCDData:
        return subtract_scaled(ccd, calibrations["bias"], what="master bias", path=context.meta.path,
                              in_place=context.owns_pixels)

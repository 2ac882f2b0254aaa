"""Master bias subtraction."""

from __future__ import annotations

from astropy.nddata import CCDData

from ccdflow.framework.arithmetic import subtract_scaled
from ccdflow.framework.step import Step, StepContext, StepParams


class BiasSubtractor(Step):
    name = "bias"
    Params = StepParams
    calibrations = ("bias",)
    description = "Subtract the master bias."

    def run(self, ccd: CCDData, params: StepParams, calibrations, context: StepContext) -> CCDData:
        return subtract_scaled(ccd, calibrations["bias"], what="master bias", path=context.meta.path)

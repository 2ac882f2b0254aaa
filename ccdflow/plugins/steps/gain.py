"""ADU to electrons."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.plugins.steps.noise import detector_gain


class GainCorrector(Step[StepParams]):
    name = "gain"
    Params = StepParams
    description = "Multiply by the gain (e-/ADU): data and uncertainty in electrons."

    def run(self, ccd: CCDData, params: StepParams, calibrations, context: StepContext) -> CCDData:
        if str(ccd.unit) not in ("adu", "ct"):
            raise UnprocessableInputError(f"gain expects ADU data, got unit {ccd.unit}",
                                          path=context.meta.path)
        gain = np.float32(detector_gain(context, "the gain step"))
        unc = None if ccd.uncertainty is None else ccd.uncertainty.__class__(
            np.asarray(ccd.uncertainty.array, np.float32) * gain, copy=False)
        header = header_of(ccd)
        header["CF_GAINV"] = (float(gain), "gain applied (e-/ADU)")
        return CCDData(np.asarray(ccd.data, np.float32) * gain, unit="electron", header=header,
                       mask=ccd.mask, uncertainty=unc)

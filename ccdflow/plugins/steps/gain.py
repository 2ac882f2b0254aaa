"""ADU to electrons."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.numerics.kernels import scale_array
from ccdflow.plugins.steps.noise import record, resolve


class GainCorrector(Step[StepParams]):
    name = "gain"
    Params = StepParams
    description = "Multiply by the gain (e-/ADU): data and uncertainty in electrons."

    def run(self, ccd: CCDData, params: StepParams, calibrations, context: StepContext) -> CCDData:
        if str(ccd.unit) not in ("adu", "ct"):
            raise UnprocessableInputError(f"gain expects ADU data, got unit {ccd.unit}",
                                          path=context.meta.path)
        header = header_of(ccd)
        resolved = resolve(context, "gain", "the gain step")
        gain = np.float32(record(resolved, "gain", header))
        unc = None if ccd.uncertainty is None else ccd.uncertainty.__class__(
            scale_array(ccd.uncertainty.array, gain, context.owns_pixels), copy=False)
        # BUNIT becomes electron only here, with a gain from the header, the instrument's
        # numbers or its explicit `assume:` (then CF_AGAIN says so): never a default
        header["CF_GAINV"] = (float(gain), f"gain applied (e-/ADU): {resolved.source}"[:47])
        return CCDData(scale_array(ccd.data, gain, context.owns_pixels), unit="electron", header=header,
                       mask=ccd.mask, uncertainty=unc)


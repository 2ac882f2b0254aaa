"""Per-pixel uncertainty from read noise and Poisson noise (ccdproc's create_deviation model)."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.numerics.kernels import deviation_array
from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise, in_electrons


def deviation(data: np.ndarray, gain: float, read_noise_e: float,
              carried: np.ndarray | None = None) -> np.ndarray:
    """Standard deviation in the data's units (ADU): sqrt(max(g*x, 0) + rn^2) / g, added in
    quadrature to an uncertainty already ``carried``."""
    return deviation_array(data, gain, read_noise_e, carried)


class UncertaintyEstimator(Step[StepParams]):
    """Place it after overscan (the Poisson term must see signal, not the bias level) and
    before bias, so the master bias's error adds to it. Any uncertainty already carried is
    kept: variances add.
    """

    name = "uncertainty"
    Params = StepParams
    description = "Create the uncertainty plane from read noise and Poisson noise."

    def run(self, ccd: CCDData, params: StepParams, calibrations, context: StepContext) -> CCDData:
        header = header_of(ccd)
        what = "the uncertainty step"
        # after the gain step the pixels are electrons already: Poisson noise is sqrt(x)
        gain = 1.0 if in_electrons(ccd) else detector_gain(context, what, header)
        rn = detector_read_noise(context, what, header)
        carried = None if ccd.uncertainty is None else ccd.uncertainty.array
        std = deviation(ccd.data, gain, rn, carried)
        out = CCDData(ccd.data, unit=ccd.unit, header=header, mask=ccd.mask,
                      uncertainty=StdDevUncertainty(std, copy=False))
        out.header["CF_UGAIN"] = (gain, "gain used for Poisson noise (e-/ADU)")
        out.header["CF_URN"] = (rn, "read noise used (e-)")
        return out

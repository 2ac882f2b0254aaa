"""Per-pixel uncertainty from read noise and Poisson noise (ccdproc's create_deviation model)."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.step import Step, StepContext, StepParams


def deviation(data: np.ndarray, gain: float, read_noise_e: float) -> np.ndarray:
    """Standard deviation in the data's units (ADU): sqrt(max(g*x, 0) + rn^2) / g."""
    electrons = np.maximum(np.asarray(data, np.float32) * np.float32(gain), 0)
    return (np.sqrt(electrons + np.float32(read_noise_e) ** 2) / np.float32(gain)).astype(np.float32)


class UncertaintyEstimator(Step):
    """Place it after overscan (the Poisson term must see signal, not the bias level) and
    before bias, so the master bias's error adds to it. Any uncertainty already carried is
    kept: variances add.
    """

    name = "uncertainty"
    Params = StepParams
    description = "Create the uncertainty plane from read noise and Poisson noise."

    def run(self, ccd: CCDData, params: StepParams, calibrations, context: StepContext) -> CCDData:
        gain = context.meta.gain or context.instrument.gain
        rn = context.meta.read_noise if context.meta.read_noise is not None else context.instrument.read_noise
        std = deviation(ccd.data, gain, rn)
        if ccd.uncertainty is not None:
            std = np.sqrt(std**2 + np.asarray(ccd.uncertainty.array, np.float32) ** 2)
        out = ccd.copy()
        out.uncertainty = StdDevUncertainty(std.astype(np.float32))
        out.header["CF_UGAIN"] = (gain, "gain used for Poisson noise (e-/ADU)")
        out.header["CF_URN"] = (rn, "read noise used (e-)")
        return out

"""Per-pixel uncertainty from read noise and Poisson noise (ccdproc's create_deviation model)."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.io import cards
from ccdflow.framework.numerics.kernels import deviation_array
from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise, in_electrons


def deviation(data: np.ndarray, gain: float, read_noise_e: float,
              carried: np.ndarray | None = None) -> np.ndarray:
    """Standard deviation in the data's units (ADU): sqrt(max(g*x, 0) + rn^2) / g, added in
    quadrature to an uncertainty already ``carried``."""
    return deviation_array(data, gain, read_noise_e, carried)


def pedestal_in_pixels(header: fits.Header) -> bool:
    """Whether the pixels still hold the electronic pedestal: neither the overscan nor the bias
    step has run on them (a camera without overscan whose bias is optional and missing)."""
    from ccdflow.plugins.steps.bias import BiasSubtractor
    from ccdflow.plugins.steps.overscan import OverscanSubtractor

    return all(header.get(step.status_keyword()) != "DONE" for step in (OverscanSubtractor, BiasSubtractor))


class UncertaintyEstimator(Step[StepParams]):
    """Place it after bias (and overscan): the Poisson term must see signal, not the pedestal
    a camera without overscan keeps until the master bias is subtracted (a 300 ADU pedestal
    under 600 e- of sky made UNCERT 20 % too large). The master bias's error is carried by then
    and kept: variances add. Where no pedestal was removed, the product says so (``CF_UPED``,
    listed with the product's assumptions) rather than be silently too large.
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
        if pedestal_in_pixels(out.header):
            cards.UPED.put(out.header, True)
            out.header.add_history("ccdflow uncertainty: no overscan or master bias applied "
                                   "before it; Poisson noise counts the bias pedestal")
        return out

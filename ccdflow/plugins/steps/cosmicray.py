"""Cosmic-ray detection on a single frame: L.A.Cosmic (van Dokkum 2001) through astroscrappy.

Mask only by default: the pixels stay as they are, so a later stack or photometry decides
what to do with them. ``clean: true`` writes astroscrappy's interpolated values instead.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework.arithmetic import header_of
from ccdflow.framework.step import Step, StepContext, StepParams
from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise, in_electrons


class CosmicRayParams(StepParams):
    sigclip: float = Field(4.5, gt=0, description="Laplacian-to-noise limit for detection.")
    sigfrac: float = Field(0.3, gt=0, description="Fraction of sigclip for neighbouring pixels.")
    objlim: float = Field(
        5.0, gt=0, description="Laplacian to fine-structure contrast; raise it if star cores are hit."
    )
    niter: int = Field(4, ge=1, le=20, description="L.A.Cosmic iterations (cost grows with each).")
    sepmed: bool = Field(True, description="Separable median filter (faster, nearly identical).")
    fsmode: Literal["median", "convolve"] = Field(
        "median", description="Fine-structure image: median filter, or convolution with the PSF."
    )
    psfmodel: Literal["gauss", "gaussx", "gaussy", "moffat"] = Field(
        "gauss", description="PSF model for fsmode=convolve."
    )
    psffwhm: float = Field(2.5, gt=0, description="PSF FWHM in pixels for fsmode=convolve.")
    psfsize: int = Field(7, ge=3, description="PSF kernel size in pixels (odd) for fsmode=convolve.")
    psfbeta: float = Field(4.765, gt=0, description="Moffat beta for psfmodel=moffat.")
    cleantype: Literal["median", "medmask", "meanmask", "idw"] = Field(
        "meanmask", description="Interpolation used for cleaned values (and between iterations)."
    )
    satlevel: float | None = Field(
        None, description="Saturation in the frame's current unit; None: the raw saturation level "
        "(CF_SATLV from the saturation step, else the instrument's) times the gain if in electrons.",
    )
    use_variance: bool = Field(
        False, description="Give astroscrappy the carried uncertainty squared as its noise model."
    )
    clean: bool = Field(False, description="Replace cosmic-ray pixels with astroscrappy's cleaned values.")


def detect_cosmic_rays(
    data: np.ndarray, mask: np.ndarray | None, *, gain: float, read_noise: float, satlevel: float,
    variance: np.ndarray | None = None, **options,
) -> tuple[np.ndarray, np.ndarray]:
    """(cosmic-ray mask, cleaned data) from astroscrappy, fed float32 without needless copies.

    ``satlevel`` is in electrons as astroscrappy compares it to ``data * gain``. The mask
    returned holds only the new detections; pixels of ``mask`` are never detected.
    """
    import astroscrappy  # its import costs ~0.1 s: only when the step runs

    as32 = None if variance is None else np.ascontiguousarray(variance, dtype=np.float32)
    crmask, cleaned = astroscrappy.detect_cosmics(
        np.ascontiguousarray(data, dtype=np.float32),
        inmask=None if mask is None else np.ascontiguousarray(mask, dtype=bool),
        invar=as32, gain=gain, readnoise=read_noise, satlevel=satlevel, **options,
    )
    return crmask, cleaned


class CosmicRayDetector(Step):
    """Runs on one frame; after the gain step the data are electrons, so gain 1 is used."""

    name = "cosmicray"
    Params = CosmicRayParams
    description = "Mask cosmic rays with L.A.Cosmic (astroscrappy); optionally clean them."

    @classmethod
    def status_keyword(cls) -> str:
        return "CF_CRAY"

    def run(self, ccd: CCDData, params: CosmicRayParams, calibrations, context: StepContext) -> CCDData:
        what = "cosmic-ray detection"
        physical_gain = detector_gain(context, what)
        electrons = in_electrons(ccd)
        gain = 1.0 if electrons else physical_gain
        read_noise = detector_read_noise(context, what)
        satlevel = params.satlevel
        if satlevel is None:
            raw_sat = float(ccd.header.get("CF_SATLV", context.instrument.saturation))
            satlevel = raw_sat * physical_gain  # electrons either way; an upper bound after bias
        elif not electrons:
            satlevel *= gain
        variance = None
        if params.use_variance and ccd.uncertainty is not None:
            variance = np.square(np.asarray(ccd.uncertainty.array, np.float32))
        options = params.model_dump(exclude={"skip", "satlevel", "use_variance", "clean"})
        crmask, cleaned = detect_cosmic_rays(
            ccd.data, ccd.mask, gain=gain, read_noise=read_noise, satlevel=satlevel,
            variance=variance, **options,
        )
        header = header_of(ccd)
        header["CF_NCR"] = (int(crmask.sum()), "pixels flagged as cosmic rays")
        header["CF_CRGN"] = (gain, "gain given to astroscrappy (1: data in e-)")
        header["CF_CRRN"] = (read_noise, "read noise given to astroscrappy (e-)")
        header["CF_CRCLN"] = (params.clean, "cosmic-ray pixels replaced by cleaned values")
        mask = crmask if ccd.mask is None else (np.asarray(ccd.mask, bool) | crmask)
        # only the flagged pixels: astroscrappy's x*gain/gain round trip moves the others by 1 ulp
        data = np.where(crmask, cleaned, ccd.data).astype(np.float32) if params.clean else ccd.data
        return CCDData(data, unit=ccd.unit, header=header, mask=mask, uncertainty=ccd.uncertainty)

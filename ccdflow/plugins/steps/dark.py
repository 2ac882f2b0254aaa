"""Master dark subtraction, scaled by exposure time and optionally by temperature."""

from __future__ import annotations

from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams
from ccdflow.framework.numerics.arithmetic import subtract_scaled


class DarkParams(StepParams):
    scale_exposure: bool = Field(
        True, description="Scale the master dark by exposure time when exposures differ."
    )
    scale_temperature: bool = Field(
        False, description="Also scale by a dark-current doubling model in temperature."
    )
    dark_doubling_c: float = Field(
        6.0, gt=0, description="Temperature rise (C) that doubles the dark current."
    )


def dark_scale(
    frame_exptime: float, dark_exptime: float, frame_temp: float | None, dark_temp: float | None,
    params: DarkParams,
) -> float:
    """Factor applied to the master dark: exposure ratio times 2**(dT / doubling)."""
    scale = 1.0
    if params.scale_exposure and dark_exptime > 0:
        scale = frame_exptime / dark_exptime
    if params.scale_temperature and frame_temp is not None and dark_temp is not None:
        scale *= 2.0 ** ((frame_temp - dark_temp) / params.dark_doubling_c)
    return scale


class DarkSubtractor(Step[DarkParams]):
    name = "dark"
    Params = DarkParams
    calibrations = ("dark",)
    description = "Subtract the master dark, scaled to the frame's exposure (and temperature)."

    def run(self, ccd: CCDData, params: DarkParams, calibrations, context: StepContext) -> CCDData:
        dark = calibrations["dark"]
        dark_exp = dark.header.get("CF_EXPT", dark.header.get("EXPTIME"))
        if dark_exp is None:
            raise UnprocessableInputError(
                "master dark has no exposure time", keyword="EXPTIME", path=context.meta.path,
                expected="the master dark's exposure in seconds",
            )
        dark_temp = dark.header.get("CF_TEMP", dark.header.get("CCD-TEMP"))
        scale = dark_scale(context.meta.exposure_time, float(dark_exp), context.meta.temperature,
                           None if dark_temp is None else float(dark_temp), params)
        out = subtract_scaled(ccd, dark, scale, what="master dark", path=context.meta.path)
        out.header["CF_DKSCL"] = (round(scale, 6), "factor applied to the master dark")
        if params.scale_temperature:
            out.header["CF_DKDBL"] = (params.dark_doubling_c, "dark doubling temperature (C)")
        return out

"""Master dark subtraction, scaled by exposure time and by the instrument's temperature law."""

from __future__ import annotations

from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework.engine.dark_law import TemperatureLaw, TemperatureScaling, temperature_scaling
from ccdflow.framework.engine.errors import ConfigError, UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams
from ccdflow.framework.numerics.arithmetic import subtract_scaled


class DarkParams(StepParams):
    scale_exposure: bool = Field(
        True, description="Scale the master dark by exposure time when exposures differ."
    )
    scale_temperature: bool = Field(
        True, description="Also scale it by the instrument's dark temperature law "
        "(caldb.dark.temperature_law) when frame and master temperatures differ.",
    )


def exposure_scale(frame_exptime: float, dark_exptime: float, params: DarkParams) -> float:
    """The exposure part of the master dark's factor: t_frame / t_dark (1 when not scaled)."""
    return frame_exptime / dark_exptime if params.scale_exposure and dark_exptime > 0 else 1.0


def _record(out: CCDData, scale: float, exposure: float, temp: TemperatureScaling | None) -> None:
    """CF_DK* cards and a HISTORY line: the factor and everything that made it."""
    hdr = out.header
    hdr["CF_DKSCL"] = (round(scale, 6), "factor applied to the master dark")
    hdr["CF_DKEXS"] = (round(exposure, 6), "dark: exposure part of CF_DKSCL")
    if temp is None:
        hdr["CF_DKLAW"] = ("off", "dark: temperature scaling off (scale_temperature)")
        hdr["HISTORY"] = f"ccdflow dark: x{scale:.6g} = exposure x{exposure:.6g}; temperature scaling off"
        return
    hdr["CF_DKTSC"] = (round(temp.factor, 6), "dark: temperature part of CF_DKSCL")
    assert temp.law is not None  # the step refuses scale_temperature without a law
    hdr["CF_DKLAW"] = ("none" if temp.reason else temp.law.law, "dark: temperature law applied")
    hdr["CF_DKLPR"] = (temp.law.parameter, f"dark: {temp.law.law} law parameter ({temp.law.unit})")
    if temp.law.law == "arrhenius":
        hdr["CF_DKLPW"] = (temp.law.power, "dark: arrhenius law power of T")
    if temp.frame_c is not None:
        hdr["CF_DKTFR"] = (round(temp.frame_c, 3), "dark: frame temperature (C)")
    if temp.dark_c is not None:
        hdr["CF_DKTDK"] = (round(temp.dark_c, 3), "dark: master dark temperature (C)")
    hdr["HISTORY"] = f"ccdflow dark: x{scale:.6g} = exposure x{exposure:.6g}, {temp.describe()}"


def chosen_law(context: StepContext) -> TemperatureLaw | None:
    """The law the caldb chose the master dark with (its receipt: the instrument's law, with
    the parameter the caldb's master darks measured where they could), else the instrument's
    (a master given by hand): the factor applied is the one the receipt shows."""
    given = (context.receipts.get("dark") or {}).get("temperature_law")
    if given:
        return TemperatureLaw.model_validate(given)
    return context.instrument.match_rule("dark").temperature_law


class DarkSubtractor(Step[DarkParams]):
    name = "dark"
    Params = DarkParams
    calibrations = ("dark",)
    description = "Subtract the master dark, scaled to the frame's exposure and temperature."

    def run(self, ccd: CCDData, params: DarkParams, calibrations, context: StepContext) -> CCDData:
        dark = calibrations["dark"]
        dark_exp = dark.header.get("CF_EXPT", dark.header.get("EXPTIME"))
        if dark_exp is None:
            raise UnprocessableInputError(
                "master dark has no exposure time", keyword="EXPTIME", path=context.meta.path,
                expected="the master dark's exposure in seconds",
            )
        dark_temp = dark.header.get("CF_TEMP", dark.header.get("CCD-TEMP"))
        exposure = exposure_scale(context.meta.exposure_time, float(dark_exp), params)
        temp = None
        if params.scale_temperature:
            law = chosen_law(context)
            if law is None:
                raise ConfigError(
                    f"dark.scale_temperature is on but instrument {context.instrument.name} has no "
                    "dark temperature law: give caldb.dark.temperature_law in its YAML, or set "
                    "dark.scale_temperature: false")
            temp = temperature_scaling(law, context.meta.temperature,
                                       None if dark_temp is None else float(dark_temp))
        scale = exposure * (1.0 if temp is None else temp.factor)
        out = subtract_scaled(ccd, dark, scale, what="master dark", path=context.meta.path,
                             in_place=context.owns_pixels)
        _record(out, scale, exposure, temp)
        return out

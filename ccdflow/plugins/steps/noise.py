"""Where a step finds the detector's gain, read noise and saturation level, and which unit the
pixels are in: shared by the uncertainty, gain, saturation and cosmic-ray steps."""

from __future__ import annotations

from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.step import StepContext


def in_electrons(ccd: CCDData) -> bool:
    """True when the gain step already ran (unit electron, or its DONE card)."""
    return str(ccd.unit) in ("electron", "e-") or ccd.header.get("CF_GAIN") == "DONE"


def _keywords(spec_keywords: list[str], fallback: str) -> str:
    return " or ".join(spec_keywords) if spec_keywords else fallback


def detector_gain(context: StepContext, what: str) -> float:
    """Gain (e-/ADU) from the frame's header map, else the instrument config when it sets one."""
    if context.meta.gain is not None:
        return float(context.meta.gain)
    if "gain" in context.instrument.model_fields_set:
        return float(context.instrument.gain)
    raise UnprocessableInputError(
        f"{what} needs the gain and neither the header nor instrument {context.instrument.name!r} "
        "gives one", path=context.meta.path,
        keyword=_keywords(context.instrument.header.gain.keyword, "GAIN"),
        expected="a gain in e-/ADU, or `gain:` in the instrument config",
    )


def detector_read_noise(context: StepContext, what: str) -> float:
    """Read noise (e-) from the frame's header map, else the instrument config when it sets one."""
    if context.meta.read_noise is not None:
        return float(context.meta.read_noise)
    if "read_noise" in context.instrument.model_fields_set:
        return float(context.instrument.read_noise)
    raise UnprocessableInputError(
        f"{what} needs the read noise and neither the header nor instrument "
        f"{context.instrument.name!r} gives one", path=context.meta.path,
        keyword=_keywords(context.instrument.header.read_noise.keyword, "RDNOISE"),
        expected="a read noise in e-, or `read_noise:` in the instrument config",
    )

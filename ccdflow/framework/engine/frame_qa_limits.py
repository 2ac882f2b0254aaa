"""When a reduced science frame needs a person's eye: the instrument's ``frame_qa:`` thresholds.

The figures themselves are measured once per product (:mod:`ccdflow.framework.builders.
frame_qa`, docs/frame-qa.md); these limits only judge them, so changing one re-flags every
frame of the next run without reducing anything again (they are outside the recipe hash). The
defaults are generic, chosen so that a normal night flags nothing; an observatory sets its own
in the instrument YAML (``frame_qa: {fwhm_max_arcsec: 2.0}``) and a night file may override
any of them for one night. A limit set to null is not checked.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from pydantic import Field

from ccdflow.framework.engine.header_spec import Strict

if TYPE_CHECKING:
    from astropy.io import fits

    from ccdflow.framework.engine.instrument import Instrument


class FrameQaLimits(Strict):
    """Per-instrument thresholds that flag a reduced science frame in the night report."""

    pixel_scale: float | None = Field(
        None, gt=0, description="Arcsec per unbinned detector pixel (multiplied by the frame's "
        "binning). null: the frame's celestial WCS (CD/CDELT in degrees) when it has one, else "
        "the scale is unknown: fwhm_arcsec is null and fwhm_max_arcsec is not checked.")
    fwhm_max: float | None = Field(
        8.0, gt=0, description="Largest median star FWHM in pixels (bad seeing or focus); "
        "the default suits cameras sampling typical seeing with 2-5 pixels.")
    fwhm_max_arcsec: float | None = Field(
        None, gt=0, description="Largest median star FWHM in arcsec, checked when the pixel "
        "scale is known (the site's seeing limit; null: not checked).")
    ellipticity_max: float | None = Field(
        0.3, ge=0, le=1, description="Largest median star ellipticity 1 - b/a (trailing, wind "
        "shake, a guiding failure); round stars measure 0.02-0.15.")
    noise_ratio_max: float | None = Field(
        1.3, gt=0, description="Largest sky noise over the UNCERT plane's (pixel by pixel): above "
        "it the noise model is wrong (gain, read noise) or the background is structured "
        "(scattered light, fringes, a bad flat).")
    min_stars: int | None = Field(
        5, ge=0, description="Fewest sources detected at 5 sigma (clouds, a closed dome, a lost "
        "pointing, a shutter that did not open).")
    saturated_fraction_max: float | None = Field(
        0.01, ge=0, le=1, description="Largest fraction of pixels flagged SATURATED (too long an "
        "exposure, the Moon, a bright star in the field).")
    masked_fraction_max: float | None = Field(
        0.1, ge=0, le=1, description="Largest fraction of pixels with any DQ bit but SOURCE "
        "(bad pixels, cosmic rays, saturation, no data).")


#: (key in the figures, what to call it, limit field, unit, kind): one line per check.
_CHECKS = (
    ("fwhm", "FWHM", "fwhm_max", " px", "max"),
    ("fwhm_arcsec", "FWHM", "fwhm_max_arcsec", " arcsec", "max"),
    ("ellipticity", "ellipticity", "ellipticity_max", "", "max"),
    ("noise_ratio", "noise ratio", "noise_ratio_max", "", "max"),
    ("n_stars", "stars", "min_stars", "", "min"),
    ("saturated_fraction", "saturated fraction", "saturated_fraction_max", "", "max"),
    ("masked_fraction", "masked fraction", "masked_fraction_max", "", "max"),
)


def flags(figures: Mapping[str, Any], limits: FrameQaLimits) -> list[str]:
    """One line per figure beyond its limit, naming figure, value, limit and the setting that
    holds it: ``"FWHM 6.1 px > 5 px (frame_qa.fwhm_max)"``. A figure not measured (None) or a
    limit set to null is not judged."""
    out = []
    for key, name, field, unit, kind in _CHECKS:
        value, limit = figures.get(key), getattr(limits, field)
        if value is None or limit is None:
            continue
        if (value > limit) if kind == "max" else (value < limit):
            shown = f"{value}" if isinstance(value, int) else f"{value:.3g}"
            sign = ">" if kind == "max" else "<"
            out.append(f"{name} {shown}{unit} {sign} {limit:g}{unit} (frame_qa.{field})")
    return out


def pixel_scale(header: fits.Header | dict, limits: FrameQaLimits,
                binning: tuple[int, int] = (1, 1)) -> float | None:
    """Arcsec per pixel of the product: the instrument's ``frame_qa.pixel_scale`` times the
    binning, else the frame's celestial WCS, else None (unknown: never assumed)."""
    if limits.pixel_scale is not None:
        return limits.pixel_scale * math.sqrt(binning[0] * binning[1])
    from astropy.io import fits as afits
    from astropy.wcs import WCS, FITSFixedWarning
    from astropy.wcs.utils import proj_plane_pixel_scales

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FITSFixedWarning)  # ESO's CDELT beside CD, RADECSYS...
        try:
            wcs = WCS(header if isinstance(header, afits.Header) else afits.Header(header))
        except ValueError:  # astropy's WcsError: a broken WCS is no scale, not a failed frame
            return None
    if not wcs.has_celestial or any(u != "deg" for u in wcs.celestial.wcs.cunit):
        return None
    scales = proj_plane_pixel_scales(wcs.celestial) * 3600.0
    scale = float(math.sqrt(scales[0] * scales[1]))
    return scale if math.isfinite(scale) and scale > 0 else None


def with_frame_qa(inst: Instrument, layers: Iterable[FrameQaLimits | None]) -> Instrument:
    """``inst`` with each night file's ``frame_qa:`` values laid over its own, value by value
    (only the values a file sets: a night that sets ``fwhm_max`` keeps the other limits)."""
    update: dict[str, Any] = {}
    for layer in layers:
        if layer is not None:
            update.update(layer.model_dump(exclude_unset=True))
    if not update:
        return inst
    limits = FrameQaLimits.model_validate({**inst.frame_qa.model_dump(exclude_unset=True), **update})
    return inst.model_copy(update={"frame_qa": limits})

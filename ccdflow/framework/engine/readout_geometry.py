"""Geometry models of an instrument: amplifiers and their sections, in raw or detector pixels,
the readout window that maps detector pixels to a frame's raw pixels, and variants of the
geometry chosen by header values (one per binning or readout mode).

The rule for sections in detector coordinates (``coordinates: detector``; applied by
ccdflow.framework.headers.detector_sections):

- A section in the YAML is in *unbinned detector pixels*: the grid of the camera's full-frame,
  1x1 readout. ``image_area`` says which part of that grid is light-sensitive; grid pixels
  before it (prescan) and after it (overscan) are clocked around whatever window is read.
- A frame reads a *window* of the image area at the frame's binning (``FrameMeta.binning``).
  Where the window lies comes from the header (``window.detsec_keywords``, CCDSEC/DETSEC:
  unbinned pixels of the image area, counted from 1 at its first pixel; else the subframe
  origin keywords such as MaxIm/SBIG ``XORGSUBF``/``YORGSUBF``), else ``window.offset``. A
  frame that reads fewer pixels than the image area holds, with none of these, is refused.
  Where its data land in the raw frame: ``window.datasec_keywords`` (DATASEC), else right
  after the prescan.
- On each axis a section's range maps to raw pixels as ``raw = first_data_raw +
  (detector - window_start) // binning`` inside the window; a range wholly before the image
  area maps to the prescan pixels just before the data, one wholly after it to the overscan
  pixels just after the data (binned likewise). A trim range is cut to the window; an overscan
  range that falls on image-area pixels outside the window, or off the raw frame, is a
  SectionError.
- Sections read from header keywords (BIASSEC, TRIMSEC, DATASEC) are raw pixels, as FITS
  defines them, whatever ``coordinates`` says.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

#: FrameMeta fields a geometry variant may be chosen by (values compared as text, as globs).
VARIANT_FIELDS = ("binning", "readout_mode", "detector", "shape", "camera", "gain_setting",
                  "offset", "frame_type")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Amplifier(_Strict):
    """One readout amplifier: its overscan and the part of the frame it illuminates.

    No gain or read noise of its own yet: the steps apply one per frame (header map, then the
    instrument's ``gain``/``read_noise``), so a per-amplifier value would be silently ignored;
    one that is set is refused instead. (The two fields stay in the model, always None, so the
    config hash of every existing instrument, and every product and master name made with it,
    stays what it was.)
    """

    name: str = Field("A", description="Amplifier name, used in header cards and logs.")
    overscan: str | None = Field(
        None, description="Overscan/prescan section in raw pixels (detector pixels with "
        "`coordinates: detector`); None: the overscan_keyword (BIASSEC), in raw pixels.")
    trim: str | None = Field(
        None, description="Useful data section in raw (or detector) pixels; None: TRIMSEC, then "
        "DATASEC, in raw pixels.")
    gain: None = Field(None, description="Not supported: set the instrument's gain (e-/ADU).")
    read_noise: None = Field(None, description="Not supported: set the instrument's read_noise (e-).")

    @field_validator("gain", "read_noise", mode="before")
    @classmethod
    def _not_per_amplifier(cls, value: Any, info: Any) -> None:
        if value is not None:
            raise ValueError(f"a per-amplifier {info.field_name} is not applied by any step; give the "
                             f"instrument's {info.field_name} (or a header keyword) instead")
        return None


class Window(_Strict):
    """Where a frame's readout window lies on the detector (``coordinates: detector`` only)."""

    detsec_keywords: list[str] = Field(
        default_factory=lambda: ["CCDSEC", "DETSEC"],
        description="Keywords giving the unbinned image-area pixels the data show (NOAO "
        "convention); the first present wins.")
    datasec_keywords: list[str] = Field(
        default_factory=lambda: ["DATASEC"],
        description="Keywords giving the raw pixels that hold the window's data; none present: "
        "the data start right after the prescan and end before the overscan.")
    origin_keywords: list[str] = Field(
        default_factory=list,
        description="Subframe origin keywords, x then y (MaxIm DL/SBIG: [XORGSUBF, YORGSUBF]); "
        "used when no detsec keyword is present.")
    origin_binned: bool = Field(
        True, description="The origin keywords count binned pixels (MaxIm DL and SBIG do).")
    origin_base: Literal[0, 1] = Field(
        0, description="The origin of the first pixel in the origin keywords (MaxIm DL: 0).")
    offset: tuple[int, int] | None = Field(
        None, description="Configured window start (x, y), unbinned image-area pixels from 1, "
        "for cameras whose headers say nothing about the window.")


class GeometryVariant(_Strict):
    """Sections for the frames whose normalised values match ``when``; unset fields inherit."""

    when: dict[str, str] = Field(
        default_factory=dict,
        description="FrameMeta field -> case-insensitive glob on its text (binning '1x2', "
        "readout_mode, detector, shape 'ny x nx' as '516x512'...); all must match. Empty: "
        "every frame (a default, written last).")
    amplifiers: list[Amplifier] | None = Field(None, description="This variant's amplifiers.")
    coordinates: Literal["raw", "detector"] | None = Field(None, description="As in Geometry.")
    image_area: str | None = Field(None, description="As in Geometry.")
    window: Window | None = Field(None, description="As in Geometry.")
    overscan_keyword: str | None = Field(None, description="As in Geometry.")
    trim_keywords: list[str] | None = Field(None, description="As in Geometry.")

    @field_validator("when", mode="before")
    @classmethod
    def _known_fields(cls, value: Any) -> Any:
        if isinstance(value, dict):
            unknown = sorted(set(value) - set(VARIANT_FIELDS))
            if unknown:
                raise ValueError(f"unknown field(s) {', '.join(unknown)} in `when`; use "
                                 f"{', '.join(VARIANT_FIELDS)}")
            return {k: str(v) for k, v in value.items()}
        return value


class Geometry(_Strict):
    """Detector layout: amplifiers plus the header keywords used when sections are not given."""

    amplifiers: list[Amplifier] = Field(
        default_factory=lambda: [Amplifier()], description="Readout amplifiers."
    )
    overscan_keyword: str | None = Field("BIASSEC", description="Fallback overscan keyword.")
    trim_keywords: list[str] = Field(
        default_factory=lambda: ["TRIMSEC", "DATASEC"],
        description="Fallback trim keywords, first present wins.",
    )
    coordinates: Literal["raw", "detector"] = Field(
        "raw", description="'raw': YAML sections are pixels of the frame as read. 'detector': "
        "unbinned detector pixels, mapped through the frame's binning and window (see the rule "
        "in ccdflow.framework.engine.readout_geometry).")
    image_area: str | None = Field(
        None, description="Detector coordinates: the light-sensitive pixels of the full-frame "
        "unbinned grid, e.g. '[1:2048,1:4096]'; grid pixels before/after it are prescan/overscan. "
        "None: sections must lie inside the window.")
    window: Window = Field(default_factory=Window, description="Where a frame's window lies.")
    variants: list[GeometryVariant] = Field(
        default_factory=list,
        description="Geometries chosen by header values; the first whose `when` matches wins. A "
        "frame that matches none is refused (never given another binning's sections).")

"""Where a camera writes each value in its headers, and how to read it: the header map of an
instrument (``header:`` in its YAML). Apart from the instrument model so each reads on its own."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ccdflow.framework.engine.frame_type_rules import FRAME_TYPE_ORDER, FrameTypeRule, FrameTypeSource

Scalar = str | int | float | bool
#: Units a raw header value may be in: times (to seconds), temperatures (to Celsius), and for an
#: observation time given as a number, Modified or plain Julian Date.
Unit = Literal["us", "ms", "s", "min", "h", "C", "K", "F", "mjd", "jd"]


class Strict(BaseModel):
    """A configuration model that refuses unknown keys (a typo is an error, never ignored)."""

    model_config = ConfigDict(extra="forbid")


class KeywordSpec(Strict):
    """Where one metadata value lives in the header and how to normalise it."""

    keyword: list[str] = Field(
        default_factory=list,
        description="Header keywords to try in order; the first one present wins.",
    )
    compound: list[str] = Field(
        default_factory=list,
        description="Keywords whose values are joined with '|' into one value "
        "(e.g. ESO DPR CATG|TYPE|TECH); missing ones contribute ''.",
    )
    hdu: int | str | None = Field(
        None, description="HDU to read; None means the data HDU, then the primary HDU."
    )
    default: Scalar | None = Field(None, description="Value used when no keyword is present.")
    required: bool = Field(False, description="Missing value (and no default) is an error.")
    unit: Unit | None = Field(
        None, description="Unit of the raw value; converted to seconds or Celsius (us, ms, s, "
        "min, h; C, K, F), or for date_obs a number read as 'mjd' or 'jd'.",
    )
    units: dict[str, Unit] = Field(
        default_factory=dict,
        description="Unit of one keyword when it differs from `unit` (ZWO's EXPOINUS: us after "
        "EXPTIME in s; MJD-OBS: mjd after DATE-OBS), so a fallback keyword keeps its own unit.",
    )
    kelvin_above: float | None = Field(
        None,
        description="Temperatures only: raw values above this are read as kelvin whatever "
        "`unit` says (some IRAF-era cameras write K under a Celsius keyword such as CCD-TEMP; "
        "no detector runs above ~60 C, and cooled ones report 150-200 K).",
    )
    values: dict[str, Scalar] = Field(
        default_factory=dict,
        description="Case-insensitive glob pattern -> normalised value; first match wins.",
    )
    strict_values: bool = Field(
        False, description="When values are given and none matches, the value is an error."
    )

    @field_validator("keyword", "compound", mode="before")
    @classmethod
    def _one_or_many(cls, value: Any) -> Any:
        return [value] if isinstance(value, str) else value


class HeaderMap(Strict):
    """Keyword map from a camera's headers to :class:`~ccdflow.framework.engine.frame.FrameMeta`."""

    frame_type: KeywordSpec = Field(description="Frame type; values map raw strings to types.")
    exposure_time: KeywordSpec = Field(description="Exposure time.")
    date_obs: KeywordSpec = Field(description="Observation start (ISO date or date+time).")
    time_obs: KeywordSpec | None = Field(
        None, description="Time of day, for headers whose date_obs holds only the date "
        "('hh:mm:ss[.sss]', or a number: decimal hours unless `unit` says otherwise)."
    )
    frame_type_rules: list[FrameTypeRule] = Field(
        default_factory=list,
        description="Frame type from conditions on several keywords (EXPTIME == 0 and SHUTTER "
        "closed -> bias); the first rule whose conditions all hold decides.",
    )
    frame_type_paths: dict[str, str] = Field(
        default_factory=dict,
        description="Opt-in: case-insensitive glob on the file's path -> frame type, for cameras "
        "that write the type only in file or folder names. A pattern of k parts ('Bias/*') is "
        "matched against the last k parts of the path; the first match wins.",
    )
    frame_type_from: list[FrameTypeSource] = Field(
        default_factory=lambda: list(FRAME_TYPE_ORDER),
        description="Where the frame type is looked for, in order: the frame_type keyword "
        "('header', which wins when present unless listed later), frame_type_rules ('rules'), "
        "frame_type_paths ('path').",
    )
    filter: KeywordSpec = Field(default_factory=KeywordSpec, description="Filter name.")
    temperature: KeywordSpec = Field(default_factory=KeywordSpec, description="CCD temperature.")
    detector: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default="default"), description="Detector id."
    )
    binning: KeywordSpec | None = Field(
        None, description="Combined binning such as CCDSUM '2 2' or '2x2' (wins over x/y)."
    )
    binning_x: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default=1), description="Binning along x."
    )
    binning_y: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default=1), description="Binning along y."
    )
    readout_mode: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(default="default"), description="Readout mode."
    )
    gain: KeywordSpec = Field(default_factory=KeywordSpec, description="Gain (e-/ADU).")
    read_noise: KeywordSpec = Field(default_factory=KeywordSpec, description="Read noise (e-).")
    camera: KeywordSpec = Field(
        default_factory=lambda: KeywordSpec(keyword=["INSTRUME"]),
        description="Camera model or name; with camera_serial, the identity calibrations never "
        "cross.",
    )
    camera_serial: KeywordSpec = Field(
        default_factory=KeywordSpec, description="Camera serial number, when the header has one."
    )
    gain_setting: KeywordSpec = Field(
        default_factory=KeywordSpec,
        description="A CMOS camera's unitless gain setting (ZWO/NINA/SharpCap GAIN), never e-/ADU.",
    )
    offset: KeywordSpec = Field(
        default_factory=KeywordSpec, description="The camera's offset (pedestal) setting."
    )

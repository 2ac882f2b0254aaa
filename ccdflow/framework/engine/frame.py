"""Normalised frame metadata: what every other part of ccdflow reads instead of raw headers."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

#: Frame types of the built-in imaging reduction: what masters are combined from, and science.
#: A plugin's calibration type adds its own raw frame type (see :func:`imaging_types`).
IMAGING_TYPES = ("bias", "dark", "flat", "science")
#: Types an instrument may classify that are recognised but not reduced (spectroscopy...).
OTHER_TYPES = ("arc", "spectrum", "spec_flat", "other")


def imaging_types(manager: PluginManager | None = None) -> tuple[str, ...]:
    """The built-in imaging types and the raw frame types of every registered calibration
    type (a fringe type's night-sky frames): ``manager``'s, else the process's."""
    from ccdflow.framework.calibrations import master_types

    extra = [t.frame_type for t in master_types(manager)
             if t.frame_type and t.frame_type not in IMAGING_TYPES]
    return (*IMAGING_TYPES, *extra)


def known_frame_types(manager: PluginManager | None = None) -> tuple[str, ...]:
    """Every frame type an instrument may give: the imaging ones and those left alone."""
    return (*imaging_types(manager), *OTHER_TYPES)


def binning_text(binning: tuple[int, int]) -> str:
    """``2x2``: binning x by y, as the caldb stores it and master names show it."""
    return f"{binning[0]}x{binning[1]}"


def shape_text(shape: tuple[int, int]) -> str:
    """``1030x1030``: raw shape, ny x nx."""
    return f"{shape[0]}x{shape[1]}"


class FrameMeta(BaseModel):
    """Metadata of one raw frame, in ccdflow's units (seconds, UTC, degrees Celsius)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    path: str | None = Field(None, description="File the metadata was read from.")
    frame_type: str = Field(description="bias, dark, flat, science, or an instrument-specific type.")
    instrument: str = Field(description="Name of the ccdflow instrument config that read it.")
    detector: str = Field("default", description="Detector/chip identifier.")
    exposure_time: float = Field(description="Exposure time in seconds.")
    filter: str | None = Field(None, description="Filter name, normalised by the instrument.")
    date_obs: datetime = Field(description="Start of the observation, timezone-aware UTC.")
    temperature: float | None = Field(None, description="Detector temperature in Celsius.")
    binning: tuple[int, int] = Field((1, 1), description="Binning (x, y).")
    readout_mode: str = Field("default", description="Readout mode/speed/port identifier.")
    camera: str | None = Field(
        None, description="Camera identity: the header's INSTRUME value, plus ' #<serial>' when the "
        "instrument maps a serial-number keyword and the header has it. Calibrations never cross "
        "cameras; None when the header names no camera.")
    gain_setting: str | None = Field(
        None, description="A CMOS camera's unitless gain setting as text ('0', '120'; ZWO, NINA and "
        "SharpCap write GAIN so), never e-/ADU. Calibrations match on it.")
    offset: str | None = Field(
        None, description="The camera's offset (pedestal) setting as text ('9'). Calibrations "
        "match on it.")
    shape: tuple[int, int] = Field(description="Raw data shape (ny, nx).")
    gain: float | None = Field(None, description="Gain in electrons per ADU.")
    read_noise: float | None = Field(None, description="Read noise in electrons.")
    note: str | None = Field(None, description="Why the frame got this type, when not obvious.")
    data_hdu: int | str | None = Field(
        None, description="HDU holding the pixels when it is not the instrument's data_hdu (a "
        "tile-compressed copy keeps a primary image in extension 1); None: the instrument's.")

    def pixel_hdu(self, default: int | str) -> int | str:
        """The HDU to read the pixels from, given the instrument's ``data_hdu``."""
        return default if self.data_hdu is None else self.data_hdu

    @property
    def file(self) -> str:
        """The file the metadata was read from, for code that reads it again."""
        if self.path is None:
            raise ValueError(f"{self.frame_type} frame metadata has no file path: {self!r}")
        return self.path

    @property
    def is_imaging(self) -> bool:
        """True when the frame takes part in imaging reduction."""
        return self.frame_type in imaging_types()

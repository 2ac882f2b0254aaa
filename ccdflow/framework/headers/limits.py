"""What ccdflow refuses per frame: the physical range of every header value it uses, in one table.

A value outside its range is a broken or hostile header, not a measurement: an exposure of
1e300 s named a master ``dark_1e+300s``, a DATE-OBS of 0001-01-01 overflowed the night's
planning, a gain of 1e300 made a "reduced" frame of infinities. Such a frame is refused when it
is scanned, with the file, keyword, value and range in the reason, so it is never grouped and
the rest of the night goes on. docs/instruments.md ("What ccdflow refuses per frame") lists
this table; a test keeps the two in step.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime

from ccdflow.framework.engine.errors import UnprocessableInputError


@dataclass(frozen=True)
class Range:
    """Accepted values of one quantity, in ccdflow's units; ``open_low`` refuses ``low`` itself."""

    name: str
    low: float
    high: float
    unit: str
    why: str
    open_low: bool = False

    def contains(self, value: float) -> bool:
        above = value > self.low if self.open_low else value >= self.low
        return math.isfinite(value) and above and value <= self.high

    @property
    def text(self) -> str:
        """'0 < value <= 1000 e-/ADU', as error messages and the docs say it."""
        low = f"{self.low:g} < " if self.open_low else f"{self.low:g} <= "
        return f"{low}{self.name} <= {self.high:g} {self.unit}".strip()


EXPOSURE = Range(
    "exposure time", 0.0, 1e6, "s",
    "11.6 days; the longest single CCD exposures last hours. A dark, flat or science frame "
    "also needs more than 0 s (a bias may have 0 s).")
GAIN = Range(
    "gain", 0.0, 1000.0, "e-/ADU",
    "a gain is a positive conversion factor; 0 is what some CMOS cameras (ZWO) write as their "
    "gain *setting* in GAIN, which is not e-/ADU (map the right keyword, or none to use the "
    "instrument's default).", open_low=True)
READ_NOISE = Range(
    "read noise", 0.0, 1000.0, "e-",
    "0 means 'not measured' to some cameras (the instrument's default is used); real CCD and "
    "CMOS read noise is 1-30 e-.")
TEMPERATURE = Range(
    "detector temperature", -273.15, 100.0, "C",
    "absolute zero to a detector far too hot to use; outside it the unit is wrong (kelvin "
    "under a Celsius keyword is converted when the instrument says so: `kelvin_above`).")
BINNING = Range("binning", 1.0, 64.0, "pixels", "whole numbers; no camera bins more than 64x64.")

#: Frame types that collect light or dark current, so their exposure must be longer than 0 s.
EXPOSED_TYPES = ("dark", "flat", "science")

#: Observation times accepted: from 1900-01-01 (the oldest plates) to the end of 2200.
FIRST_DATE = datetime(1900, 1, 1, tzinfo=UTC)
END_DATE = datetime(2201, 1, 1, tzinfo=UTC)

#: Longest filter, detector or readout-mode name: one FITS card's string value. Longer ones only
#: come from a broken header, and these values name master files and group frames.
MAX_NAME = 68

#: Every numeric range, in the order docs/instruments.md lists them.
RANGES = (EXPOSURE, GAIN, READ_NOISE, TEMPERATURE, BINNING)


def check_range(limit: Range, value: float, *, path: str | None, keyword: str | None,
                hint: str = "") -> None:
    """Raise UnprocessableInputError naming the file, keyword, value and range when ``value``
    is outside ``limit``."""
    if not limit.contains(value):
        raise UnprocessableInputError(
            f"{limit.name} is outside the accepted range{hint}", path=path,
            keyword=keyword, value=value, expected=limit.text)


def check_exposure(kind: str, value: float, *, path: str | None, keyword: str | None) -> None:
    """The exposure range, and more than 0 s for frames that collect signal."""
    check_range(EXPOSURE, value, path=path, keyword=keyword)
    if kind in EXPOSED_TYPES and value <= 0:
        raise UnprocessableInputError(
            f"a {kind} frame needs an exposure time above 0 s (only a bias may have 0 s)",
            path=path, keyword=keyword, value=value, expected=f"0 < exposure time <= {EXPOSURE.high:g} s")


def check_date(when: datetime, *, path: str | None, keyword: str | None, raw: object) -> None:
    """Observation times from 1900 to 2200 only (a year 0001 or 9999 is a broken clock)."""
    if not FIRST_DATE <= when < END_DATE:
        raise UnprocessableInputError(
            "observation time is outside the accepted years", path=path, keyword=keyword,
            value=raw, expected=f"{FIRST_DATE:%Y-%m-%d} to {END_DATE.year - 1}-12-31")


def check_name(name: str, value: str | None, *, path: str | None, keyword: str | None) -> None:
    """Filter, detector and readout-mode names fit one FITS card (at most MAX_NAME characters)."""
    if value is not None and len(value) > MAX_NAME:
        raise UnprocessableInputError(
            f"{name} is {len(value)} characters long", path=path, keyword=keyword,
            value=value[:40] + "...", expected=f"at most {MAX_NAME} characters")

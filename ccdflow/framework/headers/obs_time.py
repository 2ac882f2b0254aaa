"""The observation start as a UTC datetime, from the many ways headers write it.

ISO dates with or without milliseconds or a trailing 'Z'; a date-only ``DATE-OBS`` with the time
of day in another card (TIME-OBS, UT, UTCSTART...: every frame was stamped 00:00 before); the
pre-2000 FITS form 'dd/mm/yy'; and a Modified or plain Julian Date when the instrument says
which (``unit: mjd`` / ``jd``, or ``units: {MJD-OBS: mjd}``), so a number is never read by its
magnitude alone unless nothing says what it is (then a warning asks the YAML to say).
"""

from __future__ import annotations

import re
import warnings
from datetime import UTC, datetime
from typing import Any

from astropy.time import Time
from erfa import ErfaWarning

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.headers import limits
from ccdflow.framework.headers.card_values import NotANumber, parse_number
from ccdflow.framework.headers.header_reader import FieldSource, HeaderReader
from ccdflow.framework.headers.units import SECONDS, convert

#: 'dd/mm/yy', the FITS date form before 1 January 2000 (years 1900-1999).
_OLD_FITS_DATE = re.compile(r"(\d\d)/(\d\d)/(\d\d)")


def parse_date(reader: HeaderReader) -> datetime:
    """The observation start, checked against the accepted years; recorded as ``date_obs``."""
    hmap = reader.instrument.header
    found = reader.read("date_obs", hmap.date_obs.model_copy(update={"required": True}))
    assert found is not None  # required
    key, raw = found.keyword, found.raw if found.keyword else found.value
    unit = hmap.date_obs.units.get(key, hmap.date_obs.unit) if key else hmap.date_obs.unit
    notes: list[str] = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ErfaWarning)  # "dubious year": refused just below
            time = _julian(reader, key, raw, unit, notes)
            if time is None:
                text = _iso_text(reader, key, str(found.value).strip(), notes)
                time = Time(text, format="isot", scale="utc")
    except ValueError:
        raise UnprocessableInputError(
            "observation time cannot be parsed", path=reader.path, keyword=key, value=raw,
            expected="ISO 8601 'YYYY-MM-DDThh:mm:ss[.sss]'",
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ErfaWarning)
            when = time.to_datetime(timezone=UTC)
    except (ValueError, OverflowError):  # beyond what a datetime holds (year 10000, JD 1e300)
        when = limits.END_DATE
    limits.check_date(when, path=reader.path, keyword=key, raw=raw)
    reader.sources["date_obs"] = FieldSource("date_obs", key, raw, when, (*found.notes, *notes))
    return when


def _julian(reader: HeaderReader, key: str | None, raw: Any, unit: str | None,
            notes: list[str]) -> Time | None:
    """A Julian or Modified Julian Date as a Time, or None for a text date."""
    if unit not in ("mjd", "jd") and isinstance(raw, str | bool):
        return None
    try:
        number, comma = parse_number(raw)
    except NotANumber:
        raise ValueError(raw) from None
    if comma:
        reader.warnings.append(f"{key}: {comma}")
    if unit not in ("mjd", "jd"):
        unit = "mjd" if number < 1e6 else "jd"
        reader.warnings.append(
            f"{key} = {raw!r} is a number read as {unit.upper()} by its size; say `units: "
            f"{{{key}: {unit}}}` in the instrument's date_obs so it is not a guess")
    notes.append(f"{unit.upper()} {number}")
    return Time(number, format=unit, scale="utc")


def _iso_text(reader: HeaderReader, key: str | None, text: str, notes: list[str]) -> str:
    """An ISO 'YYYY-MM-DDThh:mm:ss[.sss]' from a date card, with the time of day added from the
    time keyword when the date card holds only a date."""
    if text.upper().endswith("Z"):
        text = text[:-1]
        notes.append("trailing 'Z' (UTC) removed")
    if m := _OLD_FITS_DATE.fullmatch(text):
        text = f"19{m.group(3)}-{m.group(2)}-{m.group(1)}"
        notes.append("old FITS date 'dd/mm/yy' read as 19yy-mm-dd")
    text = text.replace(" ", "T", 1)
    if "T" in text:
        return text
    hmap = reader.instrument.header
    tod = None if hmap.time_obs is None else reader.read("time_obs", hmap.time_obs)
    if tod is None:
        reader.warnings.append(
            f"{key} = {text!r} holds only a date and no time keyword is present "
            f"({_time_keywords(reader)}): the observation is stamped {text}T00:00:00")
        return text
    notes.append(f"time of day from {tod.keyword}")
    return f"{text}T{_time_of_day(tod, reader)}"


def _time_of_day(tod: FieldSource, reader: HeaderReader) -> str:
    """'hh:mm:ss[.sss]' from a time card: text as written (a full ISO time keeps its time part),
    or a number in the spec's unit (decimal hours when none is given: TCSs write UT so)."""
    value = tod.value
    if isinstance(value, str):
        text = value.strip().removesuffix("Z").removesuffix("z")
        return text.split("T", 1)[1] if "T" in text else text
    spec = reader.instrument.header.time_obs
    unit = (spec.units.get(tod.keyword or "", spec.unit) if spec else None) or "h"
    if isinstance(value, bool) or unit not in SECONDS:
        raise ValueError(value)
    seconds = round(convert(float(value), unit), 3)
    if not 0 <= seconds < 86400:
        raise ValueError(value)
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:06.3f}"


def _time_keywords(reader: HeaderReader) -> str:
    spec = reader.instrument.header.time_obs
    return "the instrument maps none" if spec is None or not spec.keyword else " or ".join(spec.keyword)

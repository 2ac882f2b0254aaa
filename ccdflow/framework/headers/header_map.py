"""Read a camera's header through its instrument keyword map into a FrameMeta."""

from __future__ import annotations

import fnmatch
import math
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from astropy.io import fits
from astropy.time import Time
from erfa import ErfaWarning

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import OTHER_TYPES, FrameMeta, imaging_types
from ccdflow.framework.engine.instrument import Instrument, KeywordSpec
from ccdflow.framework.headers import limits
from ccdflow.framework.headers.pixel_hdu import Headers, data_shape, resolve_data_hdu
from ccdflow.framework.io.fitsio import AUTO_HDU


def _lookup(headers: Headers, spec: KeywordSpec, data_hdu: int | str) -> tuple[str | None, Any]:
    """Return (keyword, raw value) of the first present keyword, or (None, None)."""
    order = [spec.hdu] if spec.hdu is not None else [data_hdu, 0]
    for hdu in order:
        header = headers.get(hdu)
        if header is None:
            continue
        if spec.compound:
            parts = [_card_value(header, k) for k in spec.compound]
            if all(p is None for p in parts):
                continue
            text = "|".join("" if p is None else str(p).strip() for p in parts)
            return "|".join(spec.compound), text
        for key in spec.keyword:
            value = _card_value(header, key)
            if value is not None:
                return key, value
    return None, None


def _card_value(header: fits.Header, key: str) -> Any:
    """Value of ``key``, or None when absent, undefined (``KEY =``) or blank."""
    if key not in header:
        return None
    value = header[key]
    if value is None or isinstance(value, fits.card.Undefined) or str(value).strip() == "":
        return None
    return value


def match_value(value: Any, patterns: Mapping[str, Any]) -> tuple[bool, Any]:
    """Case-insensitive glob lookup of ``value`` in ``patterns``; first match wins."""
    text = str(value).strip().lower()
    for pattern, mapped in patterns.items():
        if fnmatch.fnmatchcase(text, pattern.lower()):
            return True, mapped
    return False, value


class HeaderReader:
    """Applies one instrument's keyword map to the headers of one file."""

    def __init__(
        self,
        instrument: Instrument,
        headers: Headers,
        path: str | None,
        data_hdu: int | str | None = None,
    ) -> None:
        self.instrument, self.headers, self.path = instrument, headers, path
        self.data_hdu = instrument.data_hdu if data_hdu is None else data_hdu

    def raw(self, name: str, spec: KeywordSpec) -> tuple[str | None, Any]:
        key, value = _lookup(self.headers, spec, self.data_hdu)
        if key is None:
            if spec.default is not None:
                return None, spec.default
            if spec.required:
                wanted = " or ".join(spec.keyword or spec.compound) or "(no keyword configured)"
                raise UnprocessableInputError(
                    f"missing {name} for instrument {self.instrument.name!r}",
                    path=self.path, keyword=wanted, expected=f"a {name} value",
                )
            return None, None
        if spec.values:
            found, mapped = match_value(value, spec.values)
            if found:
                return key, mapped
            if spec.strict_values:
                raise UnprocessableInputError(
                    f"unrecognised {name} for instrument {self.instrument.name!r}",
                    path=self.path, keyword=key, value=value,
                    expected="one of " + ", ".join(repr(p) for p in spec.values),
                )
        return key, value

    def number(self, name: str, spec: KeywordSpec) -> float | None:
        key, value = self.raw(name, spec)
        if value is None:
            return None
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise UnprocessableInputError(
                f"{name} is not a number", path=self.path, keyword=key, value=value,
                expected="a number",
            ) from None
        if not math.isfinite(number):
            raise UnprocessableInputError(
                f"{name} is not finite", path=self.path, keyword=key, value=value,
                expected="a finite number",
            )
        if spec.kelvin_above is not None and number > spec.kelvin_above:
            return number - 273.15
        return _convert_unit(number, spec.unit)

    def text(self, name: str, spec: KeywordSpec) -> str | None:
        _, value = self.raw(name, spec)
        return None if value is None else str(value).strip()


def _convert_unit(value: float, unit: str | None) -> float:
    if unit == "ms":
        return value / 1000.0
    if unit == "K":
        return value - 273.15
    if unit == "F":
        return (value - 32.0) * 5.0 / 9.0
    return value


def _parse_date(reader: HeaderReader) -> datetime:
    hmap = reader.instrument.header
    key, date = reader.raw("date_obs", hmap.date_obs.model_copy(update={"required": True}))
    text = str(date).strip()
    if hmap.time_obs is not None and "T" not in text:
        _, tod = reader.raw("time_obs", hmap.time_obs)
        if isinstance(tod, int | float) and not isinstance(tod, bool) and 0 <= tod < 24:
            tod = _hours_to_hms(float(tod))
        if tod is not None:
            text = f"{text}T{str(tod).strip()}"
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ErfaWarning)  # "dubious year": refused just below
            if isinstance(date, int | float):
                time = Time(float(date), format="mjd" if date < 1e6 else "jd", scale="utc")
            else:
                time = Time(text.replace(" ", "T"), format="isot", scale="utc")
    except ValueError:
        raise UnprocessableInputError(
            "observation time cannot be parsed", path=reader.path, keyword=key, value=date,
            expected="ISO 8601 'YYYY-MM-DDThh:mm:ss[.sss]'",
        ) from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", ErfaWarning)
            when = time.to_datetime(timezone=UTC)
    except (ValueError, OverflowError):  # beyond what a datetime holds (year 10000, JD 1e300)
        when = limits.END_DATE
    limits.check_date(when, path=reader.path, keyword=key, raw=date)
    return when


def _hours_to_hms(hours: float) -> str:
    """Decimal hours (some TCSs write UT that way) to 'hh:mm:ss.sss'."""
    seconds = round(hours * 3600.0, 3)
    return f"{int(seconds // 3600):02d}:{int(seconds % 3600 // 60):02d}:{seconds % 60:06.3f}"


def _parse_binning(reader: HeaderReader) -> tuple[int, int]:
    bx: float  # parsed as int from one card, read as numbers from two
    by: float
    hmap = reader.instrument.header
    if hmap.binning is not None:
        key, value = reader.raw("binning", hmap.binning)
        if value is not None:
            parts = str(value).lower().replace("x", " ").replace(",", " ").split()
            try:
                bx, by = (int(float(p)) for p in parts)
            except (ValueError, OverflowError):  # 'inf inf' overflows int()
                raise UnprocessableInputError(
                    "binning cannot be parsed", path=reader.path, keyword=key, value=value,
                    expected="two integers such as '2 2' or '2x2'",
                ) from None
            for value in (bx, by):
                limits.check_range(limits.BINNING, value, path=reader.path, keyword=key)
            return bx, by
    bx = reader.number("binning_x", hmap.binning_x) or 1
    by = reader.number("binning_y", hmap.binning_y) or 1
    if bx != int(bx) or by != int(by) or bx < 1 or by < 1:
        raise UnprocessableInputError(
            "binning must be positive integers", path=reader.path, value=(bx, by),
            keyword="binning", expected="integers >= 1",
        )
    for value, spec in ((bx, hmap.binning_x), (by, hmap.binning_y)):
        limits.check_range(limits.BINNING, value, path=reader.path, keyword=_keyword(reader, spec))
    return int(bx), int(by)


def frame_type_of(reader: HeaderReader, exposure: float) -> tuple[str, str | None]:
    """Normalised frame type and, when it was reinterpreted, a note saying why."""
    spec = reader.instrument.header.frame_type.model_copy(update={"required": True})
    key, mapped = reader.raw("frame_type", spec)
    # Errors and notes quote what the header really says, not the mapped value.
    value = _lookup(reader.headers, spec, reader.data_hdu)[1] if key else mapped
    kind = str(mapped).strip().lower()
    if kind not in (*imaging_types(), *OTHER_TYPES):
        known, generic = match_value(value, _GENERIC_TYPES)
        if not known:
            raise UnprocessableInputError(
                f"unrecognised frame type for instrument {reader.instrument.name!r}",
                path=reader.path, keyword=key, value=value,
                expected="a value the instrument's frame_type map knows "
                "(bias, dark, flat, light/object...)",
            )
        kind = str(generic)
    note = None
    # classification, not a calibration type: ESO files call a zero-second dark a bias
    if kind == "dark" and exposure == 0 and reader.instrument.zero_exposure_dark_is_bias:
        kind, note = "bias", f"{key}={value!r} with zero exposure: bias"
    return kind, note


#: Common spellings, used when an instrument's own map does not decide.
_GENERIC_TYPES: dict[str, str] = {
    "bias*": "bias", "zero*": "bias", "dark*": "dark", "*flat*": "flat",
    "light*": "science", "object*": "science", "science": "science",
}


def normalise(
    instrument: Instrument, headers: Headers | Sequence[fits.Header], path: str | None = None
) -> FrameMeta:
    """FrameMeta for a file's headers (index 0 is the primary HDU); every value is checked
    against the ranges in :mod:`ccdflow.framework.headers.limits`, so an absurd header is refused here."""
    if not isinstance(headers, Mapping):
        headers = _index_headers(headers)
    data_hdu = resolve_data_hdu(headers, instrument.data_hdu, path)
    reader = HeaderReader(instrument, headers, path, data_hdu)
    hmap = instrument.header
    exposure = reader.number("exposure_time", hmap.exposure_time.model_copy(update={"required": True}))
    exposure_key = _keyword(reader, hmap.exposure_time)
    if exposure is None:  # required, yet the header's value maps to nothing
        exposure = float("nan")  # which the range check refuses, naming the keyword
    limits.check_range(limits.EXPOSURE, exposure, path=path, keyword=exposure_key)
    kind, note = frame_type_of(reader, exposure)
    limits.check_exposure(kind, exposure, path=path, keyword=exposure_key)
    shape = data_shape(headers, data_hdu, path)
    numbers = {}
    for name, limit, hint in (("temperature", limits.TEMPERATURE, " (wrong unit?)"),
                              ("gain", limits.GAIN, ""), ("read_noise", limits.READ_NOISE, "")):
        spec = getattr(hmap, name)
        numbers[name] = value = reader.number(name, spec)
        if value is not None:
            limits.check_range(limit, value, path=path, keyword=_keyword(reader, spec), hint=hint)
    names = {}
    for name in ("filter", "detector", "readout_mode"):
        spec = getattr(hmap, name)
        names[name] = reader.text(name, spec)
        limits.check_name(name.replace("_", " "), names[name], path=path, keyword=_keyword(reader, spec))
    return FrameMeta(
        path=path,
        frame_type=kind,
        instrument=instrument.name,
        detector=names["detector"] or "default",
        exposure_time=exposure,
        filter=names["filter"],
        date_obs=_parse_date(reader),
        temperature=numbers["temperature"],
        binning=_parse_binning(reader),
        readout_mode=names["readout_mode"] or "default",
        shape=shape,
        # what the header says, or None: the instrument's value (when it sets one) is found by
        # the steps through one resolver (plugins/steps/noise.py), never defaulted here
        gain=numbers["gain"],
        read_noise=numbers["read_noise"] or None,
        note=note,
        data_hdu=None if instrument.data_hdu in (AUTO_HDU, data_hdu) else data_hdu,
    )


def _keyword(reader: HeaderReader, spec: KeywordSpec) -> str:
    """The keyword that supplied a value, for error messages."""
    key, _ = _lookup(reader.headers, spec, reader.data_hdu)
    return key or " or ".join(spec.keyword or spec.compound) or "(default)"


def _index_headers(headers: Sequence[fits.Header]) -> dict[int | str, fits.Header]:
    """Index headers by position and by EXTNAME so specs may name either."""
    out: dict[int | str, fits.Header] = {}
    for i, header in enumerate(headers):
        out[i] = header
        name = header.get("EXTNAME")
        if isinstance(name, str):
            out[name.strip()] = header
    return out

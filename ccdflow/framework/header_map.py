"""Read a camera's header through its instrument keyword map into a FrameMeta."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

from astropy.io import fits
from astropy.time import Time

from ccdflow.framework.errors import UnprocessableInputError
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.instrument import Instrument, KeywordSpec

Headers = Mapping[int | str, fits.Header]


def _lookup(headers: Headers, spec: KeywordSpec, data_hdu: int | str) -> tuple[str | None, Any]:
    """Return (keyword, raw value) of the first present keyword, or (None, None)."""
    order = [spec.hdu] if spec.hdu is not None else [data_hdu, 0]
    for hdu in order:
        header = headers.get(hdu)
        if header is None:
            continue
        if spec.compound:
            if not any(k in header for k in spec.compound):
                continue
            parts = [str(header.get(k, "")).strip() for k in spec.compound]
            return "|".join(spec.compound), "|".join(parts)
        for key in spec.keyword:
            if key in header and header[key] is not None and str(header[key]).strip() != "":
                return key, header[key]
    return None, None


def match_value(value: Any, patterns: Mapping[str, Any]) -> tuple[bool, Any]:
    """Case-insensitive glob lookup of ``value`` in ``patterns``; first match wins."""
    text = str(value).strip().lower()
    for pattern, mapped in patterns.items():
        if fnmatch.fnmatchcase(text, pattern.lower()):
            return True, mapped
    return False, value


class HeaderReader:
    """Applies one instrument's keyword map to the headers of one file."""

    def __init__(self, instrument: Instrument, headers: Headers, path: str | None) -> None:
        self.instrument, self.headers, self.path = instrument, headers, path

    def raw(self, name: str, spec: KeywordSpec) -> tuple[str | None, Any]:
        key, value = _lookup(self.headers, spec, self.instrument.data_hdu)
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
                    f"unrecognised {name}", path=self.path, keyword=key, value=value,
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
        if number != number:  # NaN
            raise UnprocessableInputError(
                f"{name} is NaN", path=self.path, keyword=key, value=value, expected="a number"
            )
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
        if tod is not None:
            text = f"{text}T{str(tod).strip()}"
    try:
        if isinstance(date, int | float):
            time = Time(float(date), format="mjd" if date < 1e6 else "jd", scale="utc")
        else:
            time = Time(text.replace(" ", "T"), format="isot", scale="utc")
    except ValueError:
        raise UnprocessableInputError(
            "observation time cannot be parsed", path=reader.path, keyword=key, value=date,
            expected="ISO 8601 'YYYY-MM-DDThh:mm:ss[.sss]'",
        ) from None
    return time.to_datetime(timezone=UTC)


def _parse_binning(reader: HeaderReader) -> tuple[int, int]:
    hmap = reader.instrument.header
    if hmap.binning is not None:
        key, value = reader.raw("binning", hmap.binning)
        if value is not None:
            parts = str(value).lower().replace("x", " ").replace(",", " ").split()
            try:
                bx, by = (int(float(p)) for p in parts)
            except ValueError:
                raise UnprocessableInputError(
                    "binning cannot be parsed", path=reader.path, keyword=key, value=value,
                    expected="two integers such as '2 2' or '2x2'",
                ) from None
            return bx, by
    bx = reader.number("binning_x", hmap.binning_x) or 1
    by = reader.number("binning_y", hmap.binning_y) or 1
    if bx != int(bx) or by != int(by) or bx < 1 or by < 1:
        raise UnprocessableInputError(
            "binning must be positive integers", path=reader.path, value=(bx, by),
            keyword="binning", expected="integers >= 1",
        )
    return int(bx), int(by)


def data_shape(headers: Headers, data_hdu: int | str) -> tuple[int, int]:
    """Raw (ny, nx) from NAXIS cards, so scanning never reads pixels."""
    header = headers.get(data_hdu)
    if header is None or header.get("NAXIS", 0) < 2:
        raise UnprocessableInputError(
            f"HDU {data_hdu!r} holds no 2-D image", keyword="NAXIS",
            value=None if header is None else header.get("NAXIS"), expected="2",
        )
    return int(header["NAXIS2"]), int(header["NAXIS1"])


def frame_type_of(reader: HeaderReader, exposure: float) -> tuple[str, str | None]:
    spec = reader.instrument.header.frame_type.model_copy(update={"required": True})
    key, value = reader.raw("frame_type", spec)
    kind = str(value).strip().lower()
    if kind not in _KNOWN_OUTPUTS:
        known, mapped = match_value(value, _GENERIC_TYPES)
        if not known:
            raise UnprocessableInputError(
                "unrecognised frame type", path=reader.path, keyword=key, value=value,
                expected="a value the instrument's frame_type map knows",
            )
        kind = str(mapped)
    note = None
    if kind == "dark" and exposure == 0 and reader.instrument.zero_exposure_dark_is_bias:
        kind, note = "bias", f"{key}={value!r} with zero exposure: bias"
    return kind, note


_KNOWN_OUTPUTS = {"bias", "dark", "flat", "science", "arc", "spectrum", "spec_flat", "other"}
#: Common spellings, used when an instrument's own map does not decide.
_GENERIC_TYPES: dict[str, str] = {
    "bias*": "bias", "zero*": "bias", "dark*": "dark", "*flat*": "flat",
    "light*": "science", "object*": "science", "science": "science",
}


def normalise(
    instrument: Instrument, headers: Headers | Sequence[fits.Header], path: str | None = None
) -> FrameMeta:
    """FrameMeta for a file's headers (index 0 is the primary HDU)."""
    if not isinstance(headers, Mapping):
        headers = _index_headers(headers)
    reader = HeaderReader(instrument, headers, path)
    hmap = instrument.header
    exposure = reader.number("exposure_time", hmap.exposure_time.model_copy(update={"required": True}))
    if exposure is None or exposure < 0:
        raise UnprocessableInputError(
            "exposure time is negative", path=path, keyword="exposure_time", value=exposure,
            expected=">= 0 s",
        )
    kind, note = frame_type_of(reader, exposure)
    try:
        shape = data_shape(headers, instrument.data_hdu)
    except UnprocessableInputError as err:
        raise UnprocessableInputError(str(err), path=path) from None
    return FrameMeta(
        path=path,
        frame_type=kind,
        instrument=instrument.name,
        detector=reader.text("detector", hmap.detector) or "default",
        exposure_time=exposure,
        filter=reader.text("filter", hmap.filter),
        date_obs=_parse_date(reader),
        temperature=reader.number("temperature", hmap.temperature),
        binning=_parse_binning(reader),
        readout_mode=reader.text("readout_mode", hmap.readout_mode) or "default",
        shape=shape,
        gain=reader.number("gain", hmap.gain) or instrument.gain,
        read_noise=reader.number("read_noise", hmap.read_noise) or instrument.read_noise,
        note=note,
    )


def _index_headers(headers: Sequence[fits.Header]) -> dict[int | str, fits.Header]:
    """Index headers by position and by EXTNAME so specs may name either."""
    out: dict[int | str, fits.Header] = {}
    for i, header in enumerate(headers):
        out[i] = header
        name = header.get("EXTNAME")
        if isinstance(name, str):
            out[name.strip()] = header
    return out

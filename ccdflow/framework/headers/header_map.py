"""Read a camera's header through its instrument keyword map into a FrameMeta, and say where
every value came from.

:func:`read_frame_meta` gives the FrameMeta with a :class:`FieldSource` per normalised field
(keyword, raw value, unit conversion, fallback parse) and the warnings (unparsable cards read by
fallback, another keyword used, defaults, a type from the path), which ``ccdflow inspect`` shows;
:func:`normalise` is the FrameMeta alone. Reading cards is :mod:`header_reader`'s, the
observation time :mod:`obs_time`'s, the frame type :mod:`frame_type`'s.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.headers import limits
from ccdflow.framework.headers.card_values import setting_text
from ccdflow.framework.headers.frame_type import frame_type_of
from ccdflow.framework.headers.header_reader import FieldSource, HeaderReader, match_pattern
from ccdflow.framework.headers.obs_time import parse_date
from ccdflow.framework.headers.pixel_hdu import Headers, data_shape, resolve_data_hdu
from ccdflow.framework.io.fitsio import AUTO_HDU

__all__ = ["FieldSource", "HeaderReader", "HeaderReading", "Headers", "frame_type_of", "match_value",
           "normalise", "read_frame_meta"]


def match_value(value: Any, patterns: Mapping[str, Any]) -> tuple[bool, Any]:
    """Case-insensitive glob lookup of ``value`` in ``patterns``; first match wins."""
    pattern = match_pattern(value, patterns)
    return (False, value) if pattern is None else (True, patterns[pattern])


class HeaderReading(NamedTuple):
    """A file's FrameMeta, where each field came from (in FrameMeta's order) and the warnings."""

    meta: FrameMeta
    sources: list[FieldSource]
    warnings: list[str]


def normalise(
    instrument: Instrument, headers: Headers | Sequence[fits.Header], path: str | None = None
) -> FrameMeta:
    """FrameMeta for a file's headers (index 0 is the primary HDU); every value is checked
    against the ranges in :mod:`ccdflow.framework.headers.limits`, so an absurd header is refused here."""
    return read_frame_meta(instrument, headers, path).meta


def read_frame_meta(
    instrument: Instrument, headers: Headers | Sequence[fits.Header], path: str | None = None
) -> HeaderReading:
    """:func:`normalise` with the provenance of every field and the warnings."""
    if not isinstance(headers, Mapping):
        headers = _index_headers(headers)
    data_hdu = resolve_data_hdu(headers, instrument.data_hdu, path)
    reader = HeaderReader(instrument, headers, path, data_hdu)
    hmap = instrument.header
    exposure = reader.number("exposure_time", hmap.exposure_time.model_copy(update={"required": True}))
    exposure_key = reader.keyword("exposure_time", hmap.exposure_time)
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
            limits.check_range(limit, value, path=path, keyword=reader.keyword(name, spec), hint=hint)
    names = {}
    for name in ("filter", "detector", "readout_mode"):
        spec = getattr(hmap, name)
        names[name] = reader.text(name, spec)
        limits.check_name(name.replace("_", " "), names[name], path=path, keyword=reader.keyword(name, spec))
    settings = _settings(reader)
    meta = FrameMeta(
        path=path,
        frame_type=kind,
        instrument=instrument.name,
        detector=names["detector"] or "default",
        exposure_time=exposure,
        filter=names["filter"],
        date_obs=parse_date(reader),
        temperature=numbers["temperature"],
        binning=_parse_binning(reader),
        readout_mode=names["readout_mode"] or "default",
        camera=settings["camera"],
        gain_setting=settings["gain_setting"],
        offset=settings["offset"],
        shape=shape,
        # what the header says, or None: the instrument's value (when it sets one) is found by
        # the steps through one resolver (plugins/steps/noise.py), never defaulted here
        gain=numbers["gain"],
        read_noise=numbers["read_noise"] or None,
        note=note,
        data_hdu=None if instrument.data_hdu in (AUTO_HDU, data_hdu) else data_hdu,
    )
    order = list(FrameMeta.model_fields)
    sources = sorted(reader.sources.values(), key=lambda s: order.index(s.field) if s.field in order
                     else len(order))
    return HeaderReading(meta, sources, reader.warnings)


def _settings(reader: HeaderReader) -> dict[str, str | None]:
    """Camera identity ('INSTRUME value', plus ' #serial' when mapped and present), gain setting
    and offset, as text: a setting written 0 or 0.0 is "0" either way, so the same setting always
    matches itself."""
    hmap = reader.instrument.header
    out: dict[str, str | None] = {}
    for name in ("camera", "camera_serial", "gain_setting", "offset"):
        found = reader.read(name, getattr(hmap, name))
        out[name] = None if found is None else setting_text(found.value)
        if found is not None:
            reader.sources[name] = FieldSource(name, found.keyword, found.raw, out[name], found.notes)
        limits.check_name(name.replace("_", " "), out[name], path=reader.path,
                          keyword=reader.keyword(name, getattr(hmap, name)))
    serial = out.pop("camera_serial")
    if serial is not None:
        out["camera"] = f"{out['camera'] or ''} #{serial}".strip()
        found = reader.sources.get("camera")
        note = f"serial number from {reader.keyword('camera_serial', hmap.camera_serial)}"
        reader.sources["camera"] = FieldSource(
            "camera", found.keyword if found else None, found.raw if found else None, out["camera"],
            (*(found.notes if found else ()), note))
    return out


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
    for value, name, spec in ((bx, "binning_x", hmap.binning_x), (by, "binning_y", hmap.binning_y)):
        limits.check_range(limits.BINNING, value, path=reader.path, keyword=reader.keyword(name, spec))
    return int(bx), int(by)


def _index_headers(headers: Sequence[fits.Header]) -> dict[int | str, fits.Header]:
    """Index headers by position and by EXTNAME so specs may name either."""
    out: dict[int | str, fits.Header] = {}
    for i, header in enumerate(headers):
        out[i] = header
        name = header.get("EXTNAME")
        if isinstance(name, str):
            out[name.strip()] = header
    return out

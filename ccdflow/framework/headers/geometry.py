"""Amplifier geometry: instrument sections, falling back to header keywords (BIASSEC/TRIMSEC)."""

from __future__ import annotations

from dataclasses import dataclass

from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.headers.sections import SectionError, parse_section

Region = tuple[slice, slice]


@dataclass(frozen=True)
class AmplifierRegions:
    """Resolved numpy regions of one amplifier on the raw frame."""

    name: str
    overscan: Region | None
    trim: Region
    overscan_text: str | None
    trim_text: str


def amplifier_regions(
    instrument: Instrument, header: fits.Header, shape: tuple[int, int], path: str | None = None
) -> list[AmplifierRegions]:
    """Regions for every amplifier, validated against the frame shape."""
    geo = instrument.geometry
    out = []
    for amp in geo.amplifiers:
        oscan_text = amp.overscan
        if oscan_text is None and geo.overscan_keyword and geo.overscan_keyword in header:
            oscan_text = str(header[geo.overscan_keyword])
        trim_text = amp.trim
        if trim_text is None:
            trim_text = next((str(header[k]) for k in geo.trim_keywords if k in header), None)
        if trim_text is None:
            trim_text = f"[1:{shape[1]},1:{shape[0]}]"
        try:
            oscan = parse_section(oscan_text, shape) if oscan_text else None
            trim = parse_section(trim_text, shape)
        except SectionError as exc:
            raise UnprocessableInputError(
                f"amplifier {amp.name}: {exc}", path=path, keyword="overscan/trim section",
                value=oscan_text if oscan_text and oscan_text in str(exc) else trim_text,
                expected=f"a section inside the {shape[1]}x{shape[0]} (nx x ny) frame",
            ) from None
        out.append(AmplifierRegions(amp.name, oscan, trim, oscan_text, trim_text))
    return out

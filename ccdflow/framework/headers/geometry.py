"""Amplifier geometry of one frame: the instrument's sections (the geometry variant the frame's
values choose; raw pixels, or detector pixels mapped through binning and window), falling back
to header keywords (BIASSEC/TRIMSEC), each checked against the frame and against each other."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

from astropy.io import fits

from ccdflow.framework.engine.errors import SectionError
from ccdflow.framework.engine.frame import binning_text, shape_text
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.readout_geometry import Geometry
from ccdflow.framework.headers.detector_sections import Readout, readout_window, to_raw
from ccdflow.framework.headers.sections import SectionSyntaxError, parse_section

if TYPE_CHECKING:
    from ccdflow.framework.engine.frame import FrameMeta

Region = tuple[slice, slice]


@dataclass(frozen=True)
class AmplifierRegions:
    """Resolved numpy regions of one amplifier on the raw frame, the raw sections as text and
    where each came from (a header keyword, or the YAML key, for messages and cards)."""

    name: str
    overscan: Region | None
    trim: Region
    overscan_text: str | None
    trim_text: str
    overscan_source: str | None = None
    trim_source: str = "whole frame"


def variant_values(meta: FrameMeta) -> dict[str, str]:
    """The text a geometry variant's ``when`` patterns are matched against."""
    values = {"binning": binning_text(meta.binning), "shape": shape_text(meta.shape)}
    for name in ("readout_mode", "detector", "camera", "gain_setting", "offset", "frame_type"):
        value = getattr(meta, name)
        values[name] = "" if value is None else str(value)
    return values


def frame_geometry(instrument: Instrument, meta: FrameMeta | None) -> tuple[Geometry, str]:
    """The geometry that applies to the frame and the YAML key its amplifiers come from: the
    first variant whose ``when`` matches (its unset fields inherited), or the geometry itself
    when it has no variants. No variant matching is a SectionError listing them."""
    geo = instrument.geometry
    if not geo.variants:
        return geo, "geometry"
    if meta is None:
        raise SectionError(f"instrument {instrument.name!r} chooses its geometry by header values, "
                           "and this frame's were not read", keyword="geometry.variants")
    values = variant_values(meta)
    for index, variant in enumerate(geo.variants):
        if all(fnmatch.fnmatchcase(values[k].lower(), p.lower()) for k, p in variant.when.items()):
            update = {k: v for k, v in variant if k != "when" and v is not None}
            key = f"geometry.variants[{index}]" if variant.amplifiers is not None else "geometry"
            return geo.model_copy(update={**update, "variants": []}), key
    listed = "; ".join(str(v.when) for v in geo.variants)
    frame = ", ".join(f"{k} {values[k]!r}" for k in sorted({k for v in geo.variants for k in v.when}))
    raise SectionError(
        f"no geometry variant of instrument {instrument.name!r} matches this frame ({frame}); "
        "sections written for another binning or readout mode are never used",
        path=meta.path, keyword="geometry.variants", value=frame,
        expected=f"a variant whose `when` matches ({listed}), or a default variant `when: {{}}` last")


def _slices(text: str, shape: tuple[int, int], source: str, path: str | None) -> Region:
    try:
        return parse_section(text, shape)
    except SectionSyntaxError as exc:
        raise SectionError(str(exc), path=path, keyword=source, value=text,
                           expected=f"a section inside the {shape[1]}x{shape[0]} (nx x ny) frame"
                           ) from None


def _overlaps(a: Region, b: Region) -> bool:
    return all(max(p.start, q.start) < min(p.stop, q.stop) for p, q in zip(a, b, strict=True))


def amplifier_regions(
    instrument: Instrument, header: fits.Header, shape: tuple[int, int], path: str | None = None,
    meta: FrameMeta | None = None,
) -> list[AmplifierRegions]:
    """Regions for every amplifier, validated against the frame shape, the readout window
    (detector coordinates) and each other: an overscan that overlaps a data section given by
    the YAML or a header keyword is a SectionError (a BIASSEC inside the data is no overscan).

    ``meta`` (the frame's FrameMeta) gives the binning and the values variants are chosen by;
    without it, it is read from ``header`` when the geometry needs it."""
    if meta is None and (instrument.geometry.variants or instrument.geometry.coordinates == "detector"):
        from ccdflow.framework.headers.header_map import normalise

        meta = normalise(instrument, [header], path)
    geo, key = frame_geometry(instrument, meta)
    readout: Readout | None = None
    if geo.coordinates == "detector":
        given = [t for a in geo.amplifiers for t in (a.overscan, a.trim) if t]
        binning = meta.binning if meta is not None else (1, 1)
        readout = readout_window(geo, header, shape, binning, given, path)
    out = []
    for index, amp in enumerate(geo.amplifiers):
        texts: dict[str, tuple[str | None, str | None]] = {}
        for kind, given_text, keywords in (("overscan", amp.overscan, [geo.overscan_keyword]),
                                           ("trim", amp.trim, geo.trim_keywords)):
            source = f"{key}.amplifiers[{index}].{kind}"
            if given_text is not None:
                raw = given_text if readout is None else to_raw(given_text, readout, kind, source, path)  # type: ignore[arg-type]
                texts[kind] = (raw, source if readout is None else f"{source} {given_text} (detector)")
                continue
            found = next((k for k in keywords if k and k in header), None)
            texts[kind] = (None, None) if found is None else (str(header[found]), found)
        oscan_text, oscan_source = texts["overscan"]
        trim_text, trim_source = texts["trim"]
        oscan = _slices(oscan_text, shape, oscan_source or "", path) if oscan_text else None
        if trim_text is None:
            trim_text, trim_source = f"[1:{shape[1]},1:{shape[0]}]", "whole frame"
        trim = _slices(trim_text, shape, trim_source or "", path)
        out.append(AmplifierRegions(amp.name, oscan, trim, oscan_text, trim_text, oscan_source,
                                    trim_source or "whole frame"))
    _check_apart(out, path)
    return out


def _check_apart(amps: list[AmplifierRegions], path: str | None) -> None:
    """An overscan may not overlap any amplifier's data section (a whole-frame fallback is not
    a data section anyone gave, and is left out)."""
    for amp in amps:
        if amp.overscan is None:
            continue
        for other in amps:
            if other.trim_source != "whole frame" and _overlaps(amp.overscan, other.trim):
                raise SectionError(
                    f"amplifier {amp.name}'s overscan {amp.overscan_text} overlaps the data section "
                    f"{other.trim_text} (from {other.trim_source}) of amplifier {other.name}: "
                    "it would subtract data, not bias", path=path, keyword=amp.overscan_source,
                    value=amp.overscan_text, expected="an overscan apart from every data section")

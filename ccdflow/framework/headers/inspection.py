"""What ccdflow makes of one file, and why: the data behind ``ccdflow inspect``.

For each file: which instrument read it and why the others did not, every normalised field with
the keyword and raw value it came from (and any unit conversion or fallback parse), the frame
type and the calibration group it joins, and the warnings. It is what a newcomer reads to write
a camera's YAML, so it never stops at the first problem it can explain instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from ccdflow.framework.engine.errors import CcdflowError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.header_spec import HeaderMap, KeywordSpec
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.headers.card_values import read_card, shown
from ccdflow.framework.headers.header_map import read_frame_meta
from ccdflow.framework.headers.header_reader import FieldSource, match_pattern
from ccdflow.framework.headers.pixel_hdu import Headers
from ccdflow.framework.io.fitsio import TruncatedFileError, read_headers


@dataclass
class Inspection:
    """One file as ccdflow reads it; ``error`` says why it cannot be used, if it cannot."""

    path: str
    instrument: str | None = None
    chosen_by: str | None = None  # "--instrument" or "identify rules"
    identification: dict[str, str] = field(default_factory=dict)  # instrument -> why (not)
    sources: list[FieldSource] = field(default_factory=list)
    meta: FrameMeta | None = None
    group: dict[str, Any] | None = None
    warnings: list[str] = field(default_factory=list)
    error: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "path": self.path, "instrument": self.instrument, "chosen_by": self.chosen_by,
            "identification": self.identification,
            "fields": [{"field": s.field, "keyword": s.keyword, "raw": _plain(s.raw),
                        "value": _plain(s.value), "notes": list(s.notes)} for s in self.sources],
            "frame_type": None if self.meta is None else self.meta.frame_type,
            "note": None if self.meta is None else self.meta.note,
            "group": None if self.group is None else {k: _plain(v) for k, v in self.group.items()},
            "warnings": self.warnings, "error": self.error,
        }


def inspect_file(path: str, manager: PluginManager, instrument: str | None = None) -> Inspection:
    """Read ``path`` as ``instrument`` (else the one its header identifies), explaining each step."""
    out = Inspection(path)
    truncated = None
    try:
        headers = read_headers(path, complete=True)
    except TruncatedFileError as exc:  # refused as in a night, but its header still explained
        truncated, headers = str(exc), read_headers(path)
    except CcdflowError as exc:
        out.error = str(exc)
        return out
    _explain(out, path, headers, manager, instrument)
    out.error = truncated or out.error
    return out


def _explain(out: Inspection, path: str, headers: Headers, manager: PluginManager,
             instrument: str | None) -> None:
    out.identification = identification(headers, manager)
    if instrument is not None:
        out.instrument, out.chosen_by = instrument, "--instrument"
    else:
        out.instrument, out.chosen_by = manager.identify(headers), "identify rules"
    if out.instrument is None:
        out.error = "no instrument recognises this header (see why for each above); name one " \
                    "with --instrument, or write a YAML with `identify:` rules that match"
        return
    try:
        inst = manager.instrument(out.instrument)
        reading = read_frame_meta(inst, headers, path)
    except CcdflowError as exc:
        out.error = str(exc)
        return
    out.meta, out.sources, out.warnings = reading
    out.sources += _absent(inst.header, {s.field for s in reading.sources})
    out.group = calibration_group(reading.meta, manager)


def identification(headers: Headers, manager: PluginManager) -> dict[str, str]:
    """For every instrument with ``identify`` rules: what matched, or the first rule that did not."""
    out = {}
    for name, inst in manager.instruments.items():
        if not inst.identify:
            out[name] = "no identify rules: used only when named (--instrument)"
            continue
        matched, why = [], None
        for key, patterns in inst.identify.items():
            card = next((c for h in headers.values() if (c := read_card(h, key)) is not None), None)
            if card is None or card.value is None:
                why = f"{key} absent" if card is None else card.error
                break
            pattern = match_pattern(card.value, dict.fromkeys(patterns))
            if pattern is None:
                why = f"{key}={shown(card.value)!r} matches none of {patterns}"
                break
            matched.append(f"{key}={str(card.value).strip()!r} ~ {pattern!r}")
        out[name] = f"not matched: {why}" if why else "matches: " + ", ".join(matched)
    return out


def calibration_group(meta: FrameMeta, manager: PluginManager) -> dict[str, Any]:
    """The fields that must be equal for frames to be combined into one master with this one
    (its night, its setup and what its calibration type adds), as the night groups them."""
    from ccdflow.framework.builders.reduction import observing_night
    from ccdflow.framework.calibrations import for_frame_type
    from ccdflow.framework.engine.caltype import SETUP_FIELDS

    group: dict[str, Any] = {"frame_type": meta.frame_type, "night": observing_night(meta)}
    group.update({name: getattr(meta, name) for name in SETUP_FIELDS})
    kind = for_frame_type(meta.frame_type, manager)
    if kind is None:
        return group
    rule = manager.instrument(meta.instrument).match_rule(kind.name, manager)
    extra = kind.group_key(meta, rule)  # what the type adds to the night and setup
    if len(kind.also_match) == len(extra):
        group.update(zip(kind.also_match, extra, strict=True))
    else:  # a type's own key: as its master's name says it
        group[f"{kind.name} master"] = " ".join(str(part) for part in kind.name_parts(meta))
    for name in kind.numeric_group:  # clustered by gaps within the type's rule
        value = getattr(meta, name)
        limits = None if value is None else kind.group_tolerance(name, float(value), rule)
        group[name] = value
        if limits is not None:
            group[f"{name} tolerance"] = f"gaps <= {limits[0]:g}, span <= {limits[1]:g}"
    return group


def _absent(hmap: HeaderMap, found: set[str]) -> list[FieldSource]:
    """A row for each mapped value the header does not have, naming the keywords looked for."""
    out = []
    for name in type(hmap).model_fields:
        spec = getattr(hmap, name)
        if isinstance(spec, KeywordSpec) and name not in found and (spec.keyword or spec.compound):
            wanted = " or ".join(spec.keyword or spec.compound)
            out.append(FieldSource(name, None, None, None, (f"not in the header ({wanted})",)))
    return out


def _plain(value: Any) -> Any:
    """A JSON-ready value: numbers, text and None as they are, anything else as text."""
    if value is None or isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    return str(value)

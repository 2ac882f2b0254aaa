"""The normalised frame type of one file: from its type keyword, from rules over several keywords,
or from its file and folder names, in the order the instrument lists them.

Cameras in the wild do not all write IMAGETYP: ZWO's ASIImg puts the type only in the file and
folder names (``Bias/Bias_ASIImg_frame0001.fit``). Reading names is opt-in per instrument
(``frame_type_paths``), and the keyword wins when present unless the YAML orders otherwise
(``frame_type_from``). How the type was decided goes into FrameMeta.note and the provenance.
"""

from __future__ import annotations

import fnmatch
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from ccdflow.framework.engine.errors import ConfigError, UnprocessableInputError
from ccdflow.framework.engine.frame import known_frame_types
from ccdflow.framework.engine.frame_type_rules import Condition, FrameTypeRule
from ccdflow.framework.headers.card_values import NotANumber, parse_number
from ccdflow.framework.headers.header_reader import FieldSource, HeaderReader, match_pattern

if TYPE_CHECKING:
    from ccdflow.framework.engine.instrument import Instrument

#: Common spellings, used when an instrument's own map does not decide.
GENERIC_TYPES: dict[str, str] = {
    "bias*": "bias", "zero*": "bias", "dark*": "dark", "*flat*": "flat",
    "light*": "science", "object*": "science", "science": "science",
}


def frame_type_of(reader: HeaderReader, exposure: float) -> tuple[str, str | None]:
    """Normalised frame type and, when it was not simply the type keyword's, a note saying how
    it was decided; recorded as ``frame_type`` in the reader's sources."""
    hmap = reader.instrument.header
    found: tuple[str, str | None] | None = None
    for source in hmap.frame_type_from:
        if source == "header":
            found = _from_keyword(reader)
        elif source == "rules":
            found = _from_rules(reader, hmap.frame_type_rules, exposure)
        else:
            found = _from_path(reader, hmap.frame_type_paths)
        if found is not None:
            break
    if found is None:
        raise _missing(reader)
    kind, note = found
    # classification, not a calibration type: ESO files call a zero-second dark a bias
    if kind == "dark" and exposure == 0 and reader.instrument.zero_exposure_dark_is_bias:
        typed = reader.sources["frame_type"]
        kind, note = "bias", f"{typed.keyword or 'frame type'}={typed.raw!r} with zero exposure: bias"
        reader.sources["frame_type"] = FieldSource("frame_type", typed.keyword, typed.raw, kind,
                                                   (*typed.notes, note))
    return kind, note


def _from_keyword(reader: HeaderReader) -> tuple[str, str | None] | None:
    spec = reader.instrument.header.frame_type.model_copy(update={"required": False})
    found = reader.read("frame_type", spec)
    if found is None:
        return None
    kind = str(found.value).strip().lower()
    if kind not in known_frame_types():
        pattern = match_pattern(found.raw if found.keyword else found.value, GENERIC_TYPES)
        if pattern is None:
            raise UnprocessableInputError(
                f"unrecognised frame type for instrument {reader.instrument.name!r}",
                path=reader.path, keyword=found.keyword, value=found.raw if found.keyword else found.value,
                expected="a value the instrument's frame_type map knows "
                "(bias, dark, flat, light/object...)",
            )
        kind = GENERIC_TYPES[pattern]
        found = FieldSource("frame_type", found.keyword, found.raw, kind,
                            (*found.notes, f"common spelling {pattern!r}"))
    reader.sources["frame_type"] = FieldSource("frame_type", found.keyword, found.raw, kind, found.notes)
    return kind, None


def _from_rules(reader: HeaderReader, rules: list[FrameTypeRule],
                exposure: float) -> tuple[str, str | None] | None:
    for rule in rules:
        if all(_holds(reader, c, exposure) for c in rule.when):
            kind = _checked(rule.type, "frame_type_rules")
            note = f"frame type from rule: {rule.describe()}"
            raw = {c.subject: _subject(reader, c, exposure) for c in rule.when}
            reader.sources["frame_type"] = FieldSource("frame_type", None, raw, kind, (note,))
            return kind, note
    return None


def _from_path(reader: HeaderReader, patterns: dict[str, str]) -> tuple[str, str | None] | None:
    if not patterns or reader.path is None:
        return None
    parts = PurePath(reader.path).parts
    for pattern, kind in patterns.items():
        depth = len(pattern.strip("/").split("/"))
        tail = "/".join(parts[-depth:])
        if len(parts) >= depth and fnmatch.fnmatchcase(tail.lower(), pattern.strip("/").lower()):
            kind = _checked(kind, "frame_type_paths")
            note = f"frame type from the path: {tail!r} matches {pattern!r}"
            reader.sources["frame_type"] = FieldSource("frame_type", None, tail, kind, (note,))
            return kind, note
    return None


def _subject(reader: HeaderReader, condition: Condition, exposure: float) -> Any:
    """The value a condition tests: the normalised exposure, or the keyword's (None if absent
    or unreadable, with a warning for the latter)."""
    if condition.field is not None:
        return exposure
    card = reader.card(str(condition.keyword))
    if card is not None and card.error is not None:
        reader.warnings.append(f"frame_type_rules: {card.error}; the condition on it does not hold")
    return None if card is None else card.value


def _holds(reader: HeaderReader, condition: Condition, exposure: float) -> bool:
    value = _subject(reader, condition, exposure)
    if condition.present is not None and (value is not None) != condition.present:
        return False
    if value is None:
        return condition.present is False
    number = _number(value)
    if condition.equals is not None:
        wanted = _number(condition.equals)
        if number is not None and wanted is not None:
            if number != wanted:
                return False
        elif str(value).strip().lower() != str(condition.equals).strip().lower():
            return False
    text = str(value).strip().lower()
    if condition.matches and not any(fnmatch.fnmatchcase(text, m.lower()) for m in condition.matches):
        return False
    if condition.below is not None and (number is None or not number < condition.below):
        return False
    return condition.above is None or (number is not None and number > condition.above)


def _number(value: Any) -> float | None:
    try:
        return parse_number(value)[0]
    except NotANumber:
        return None


def check_frame_types(instrument: Instrument, source: str, known: tuple[str, ...]) -> None:
    """Every frame type the instrument's ``frame_type_paths`` and ``frame_type_rules`` give is one
    of ``known`` (the loading manager's types, a plugin's included): a typo (``flt``) is a
    ConfigError naming the file when it is loaded, not when the first file matches, inside a
    worker, in the middle of a night."""
    hmap = instrument.header
    given = [(kind, f"header.frame_type_paths[{pattern!r}]")
             for pattern, kind in hmap.frame_type_paths.items()]
    given += [(rule.type, f"header.frame_type_rules[{i}]") for i, rule in enumerate(hmap.frame_type_rules)]
    for kind, where in given:
        if kind not in known:
            raise ConfigError(f"{source}: {where} gives frame type {kind!r}, which is not a frame "
                              f"type ({', '.join(known)})")


def _checked(kind: str, where: str) -> str:
    """A type given by the instrument's YAML: a mistake there is the configuration's."""
    if kind not in known_frame_types():
        raise ConfigError(f"{where} gives frame type {kind!r}, which is not a frame type "
                          f"({', '.join(known_frame_types())})")
    return kind


def _missing(reader: HeaderReader) -> UnprocessableInputError:
    """No source gave a type: name the keywords, and what else was tried."""
    hmap = reader.instrument.header
    spec = hmap.frame_type
    wanted = " or ".join(spec.keyword or spec.compound) or "(no keyword configured)"
    tried = []
    if hmap.frame_type_rules and "rules" in hmap.frame_type_from:
        tried.append(f"none of {len(hmap.frame_type_rules)} frame_type_rules holds")
    if hmap.frame_type_paths and "path" in hmap.frame_type_from:
        tried.append("no frame_type_paths pattern matches the path")
    also = f"; {'; '.join(tried)}" if tried else ""
    hint = "" if hmap.frame_type_paths else (
        " (if the type is only in file or folder names, give `header: frame_type_paths:` in the "
        "instrument's YAML, e.g. {'Bias/*': bias}: see docs/cameras.md)")
    return UnprocessableInputError(
        f"missing frame_type for instrument {reader.instrument.name!r}{also}",
        path=reader.path, keyword=wanted, expected="a frame_type value" + hint)

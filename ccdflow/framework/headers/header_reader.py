"""Apply one instrument's keyword map to one file's headers, recording where every value came from.

Each value is looked up through its KeywordSpec's keywords in order. A card that cannot be read
or parsed does not end the search: the next keyword is tried and a warning says so, and the
frame is refused only when no keyword gives a value (then naming the card that failed). Every
value read leaves a :class:`FieldSource` (keyword, raw value, conversions) and every fallback a
warning, which ``ccdflow inspect`` shows.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.header_spec import KeywordSpec
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.headers.card_values import CardValue, NotANumber, parse_number, read_card
from ccdflow.framework.headers.pixel_hdu import Headers
from ccdflow.framework.headers.units import convert, describe


@dataclass(frozen=True)
class FieldSource:
    """Where one normalised value came from: the keyword (None for a default or a value not read
    from a card, such as a type from the file's path), the value as the header wrote it, the
    normalised value, and how one became the other (unit conversion, mapping, fallback parse)."""

    field: str
    keyword: str | None
    raw: Any
    value: Any
    notes: tuple[str, ...] = ()


#: What a parse gives: the value, notes (conversions) and warnings (fallbacks).
Parsed = tuple[Any, list[str], list[str]]


class _Refused(Exception):
    """A card whose value cannot be used; becomes UnprocessableInputError if no keyword works."""

    def __init__(self, message: str, keyword: str, value: Any, expected: str) -> None:
        super().__init__(message)
        self.message, self.keyword, self.value, self.expected = message, keyword, value, expected


def match_pattern(value: Any, patterns: Mapping[str, Any]) -> str | None:
    """The first case-insensitive glob in ``patterns`` that ``value`` matches, or None."""
    text = str(value).strip().lower()
    return next((p for p in patterns if fnmatch.fnmatchcase(text, p.lower())), None)


@dataclass
class HeaderReader:
    """Applies one instrument's keyword map to the headers of one file."""

    instrument: Instrument
    headers: Headers
    path: str | None
    data_hdu: int | str
    sources: dict[str, FieldSource] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)

    def card(self, key: str, hdu: int | str | None = None) -> CardValue | None:
        """``key``'s card in ``hdu`` (None: the data HDU, then the primary), or None."""
        for index in [hdu] if hdu is not None else [self.data_hdu, 0]:
            header = self.headers.get(index)
            found = None if header is None else read_card(header, key)
            if found is not None:
                return found
        return None

    def _cards(self, spec: KeywordSpec) -> Iterator[CardValue]:
        """The spec's cards that are present, in order: every keyword of the data HDU, then of
        the primary (or only ``spec.hdu``)."""
        seen: set[tuple[int, str]] = set()
        for hdu in [spec.hdu] if spec.hdu is not None else [self.data_hdu, 0]:
            header = self.headers.get(hdu)
            if header is None:
                continue
            for key in spec.keyword:
                found = read_card(header, key)
                if found is not None and (id(header), key) not in seen:
                    seen.add((id(header), key))
                    yield found

    def read(self, name: str, spec: KeywordSpec, parse: Callable[[str | None, Any], Parsed] | None = None
             ) -> FieldSource | None:
        """The first of ``spec``'s keywords whose value can be read (mapped through
        ``spec.values``, then ``parse``d), else its default; None when neither (an error when
        ``spec.required``). Recorded in :attr:`sources`."""
        if spec.compound:
            return self._compound(name, spec, parse)
        refused: list[_Refused] = []
        for card in self._cards(spec):
            try:
                found = self._value(name, spec, card, parse)
            except _Refused as refusal:
                refused.append(refusal)
                continue
            for earlier in refused:
                self.warnings.append(f"{earlier.keyword}: {name} {earlier.message} (found "
                                     f"{earlier.value!r}); {card.keyword} used instead")
            return self._record(found)
        if refused:
            why = refused[0]
            others = ", ".join(r.keyword for r in refused[1:])
            tried = f"; also unusable: {others}" if others else ""
            raise UnprocessableInputError(
                f"{name} {why.message}{tried}", path=self.path, keyword=why.keyword, value=why.value,
                expected=why.expected)
        return self._default(name, spec, parse)

    def _value(self, name: str, spec: KeywordSpec, card: CardValue,
               parse: Callable[[str | None, Any], Parsed] | None) -> FieldSource:
        if card.error is not None:
            raise _Refused(f"cannot be read: {card.error}", card.keyword, None, "a valid FITS card")
        notes, warned = [], [card.warning] if card.warning else []
        value = card.value
        if spec.values:
            pattern = match_pattern(value, spec.values)
            if pattern is not None:
                value = spec.values[pattern]
                notes.append(f"{card.value!r} matched {pattern!r}")
            elif spec.strict_values:
                raise UnprocessableInputError(
                    f"unrecognised {name} for instrument {self.instrument.name!r}", path=self.path,
                    keyword=card.keyword, value=card.value,
                    expected="one of " + ", ".join(repr(p) for p in spec.values))
        if parse is not None:
            try:
                value, more_notes, more_warned = parse(card.keyword, value)
            except NotANumber as exc:
                expected = "a finite number" if str(exc) == "not finite" else "a number"
                raise _Refused(f"is {exc}", card.keyword, card.value, expected) from None
            notes += more_notes
            warned += more_warned
        self.warnings.extend(warned)
        return FieldSource(name, card.keyword, card.value, value, tuple(notes + warned))

    def _compound(self, name: str, spec: KeywordSpec,
                  parse: Callable[[str | None, Any], Parsed] | None) -> FieldSource | None:
        """Keywords joined with '|' (ESO DPR CATG|TYPE|TECH); missing ones contribute ''."""
        for hdu in [spec.hdu] if spec.hdu is not None else [self.data_hdu, 0]:
            if self.headers.get(hdu) is None:
                continue
            parts = [self.card(k, hdu) for k in spec.compound]
            if all(p is None for p in parts):
                continue
            text = "|".join("" if p is None or p.value is None else str(p.value).strip() for p in parts)
            card = CardValue("|".join(spec.compound), text)
            return self._record(self._value(name, spec.model_copy(update={"compound": []}), card, parse))
        return self._default(name, spec, parse)

    def _default(self, name: str, spec: KeywordSpec,
                 parse: Callable[[str | None, Any], Parsed] | None) -> FieldSource | None:
        if spec.default is None:
            if spec.required:
                wanted = " or ".join(spec.keyword or spec.compound) or "(no keyword configured)"
                raise UnprocessableInputError(
                    f"missing {name} for instrument {self.instrument.name!r}",
                    path=self.path, keyword=wanted, expected=f"a {name} value")
            return None
        value, notes, _ = parse(None, spec.default) if parse else (spec.default, [], [])
        wanted = " or ".join(spec.keyword or spec.compound)
        note = f"no {wanted} card: the instrument's default" if wanted else "the instrument's value"
        if spec.required:
            self.warnings.append(f"{name}: {note} {spec.default!r} used")
        return self._record(FieldSource(name, None, None, value, (note, *notes)))

    def _record(self, found: FieldSource) -> FieldSource:
        self.sources[found.field] = found
        return found

    def raw(self, name: str, spec: KeywordSpec) -> tuple[str | None, Any]:
        """(keyword, value mapped through ``spec.values``), (None, default) or (None, None)."""
        found = self.read(name, spec)
        return (None, None) if found is None else (found.keyword, found.value)

    def number(self, name: str, spec: KeywordSpec) -> float | None:
        """A finite number in ccdflow's units (seconds, Celsius), or None."""
        found = self.read(name, spec, lambda key, value: _number(spec, key, value))
        return None if found is None else float(found.value)

    def text(self, name: str, spec: KeywordSpec) -> str | None:
        found = self.read(name, spec)
        return None if found is None else str(found.value).strip()

    def keyword(self, name: str, spec: KeywordSpec) -> str:
        """The keyword that supplied ``name``, for error messages."""
        found = self.sources.get(name)
        if found is not None and found.keyword is not None:
            return found.keyword
        return " or ".join(spec.keyword or spec.compound) or "(default)"


def _number(spec: KeywordSpec, key: str | None, value: Any) -> Parsed:
    number, comma = parse_number(value)
    warned = [f"{key}: {comma}"] if comma else []
    if spec.kelvin_above is not None and number > spec.kelvin_above:
        return number - 273.15, [f"{number:g} > {spec.kelvin_above:g}: read as kelvin"], warned
    unit = spec.units.get(key, spec.unit) if key else spec.unit
    converted = convert(number, unit)
    how = describe(number, unit, converted)
    return converted, [how] if how else [], warned

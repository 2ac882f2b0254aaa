"""The built-in ``identify_instrument``: every instrument's declarative ``identify`` rules.

It lives apart from the plugin manager because it is a plugin like any other (registered
``trylast`` so code-based identifiers get the first word); the manager only hands it the
registry of instruments it reads.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import TYPE_CHECKING

from ccdflow.framework.engine.hookspecs import hookimpl

if TYPE_CHECKING:
    from astropy.io import fits

    from ccdflow.framework.engine.instrument import Instrument
    from ccdflow.framework.engine.instrument_files import InstrumentOrigin


class DeclarativeIdentifier:
    """Matches each instrument's ``identify`` glob rules; the most specific match wins.

    An instrument from a file given on the command line beats one from the user's instrument
    folder, which beats a package's (your own description of a camera wins wherever both
    match). Within one source, specificity is the number of keywords in the rule, then the
    number of literal (non-wildcard) characters in the patterns that matched:
    ``INSTRUME: 'EXAMPLECAM*'`` beats ``IMAGETYP: '*'``. Equal scores go to the instrument
    registered first.
    """

    def __init__(self, instruments: Mapping[str, Instrument],
                 origins: Mapping[str, InstrumentOrigin] | None = None) -> None:
        # the manager's own dicts, read at each call: instruments registered later count too
        self.instruments = instruments
        self.origins = origins if origins is not None else {}

    @hookimpl(trylast=True)
    def identify_instrument(
        self, header: fits.Header, headers: Mapping[int | str, fits.Header]
    ) -> str | None:
        best: tuple[tuple[int, int, int], str] | None = None
        for name, inst in self.instruments.items():
            if not inst.identify:
                continue
            literal = 0
            for key, patterns in inst.identify.items():
                matched = matching_pattern(headers, key, patterns)
                if matched is None:
                    break
                literal += len(matched.replace("*", "").replace("?", ""))
            else:
                origin = self.origins.get(name)
                score = (origin.rank if origin else 0, len(inst.identify), literal)
                if best is None or score > best[0]:
                    best = (score, name)
        return None if best is None else best[1]


def matching_pattern(
    headers: Mapping[int | str, fits.Header], key: str, patterns: list[str]
) -> str | None:
    """The first of ``patterns`` that the first header holding ``key`` matches, or None."""
    from ccdflow.framework.headers.card_values import read_card

    for header in headers.values():
        if key in header:
            # read_card: a card astropy calls unparsable is read from its text, not raised
            card = read_card(header, key)
            value = "" if card is None or card.value is None else str(card.value).strip().lower()
            return next((p for p in patterns if fnmatch.fnmatchcase(value, p.lower())), None)
    return None

"""One header card's value, read even when astropy cannot parse the card, and numbers as written
in the wild.

astropy raises VerifyError ("Unparsable card") the moment a malformed value is read: ZWO's
ASIImg writes ``EXPTIME = 6,4E-05`` (a decimal comma, unquoted), and one such card used to lose
the whole frame although every value the reduction needs was readable. Here each card is read on
its own: a card astropy cannot parse is read from a repaired copy of its image (the caller's
header is left as it was), and the reader says so, so the fallback is never silent.
"""

from __future__ import annotations

import copy
import math
import re
import warnings
from dataclasses import dataclass
from typing import Any

from astropy.io import fits

#: A number whose only fault is a decimal comma: '6,4E-05', '-12,5', '0,005'.
_DECIMAL_COMMA = re.compile(r"[+-]?\d*,\d+(?:[eEdD][+-]?\d+)?|[+-]?\d+,(?:[eEdD][+-]?\d+)?")


@dataclass(frozen=True)
class CardValue:
    """What one card holds: the value (None when astropy and the fallback both fail), the text
    it was read from when astropy could not parse the card, and why it could not be read."""

    keyword: str
    value: Any
    repaired: str | None = None  # the value text read from the card image, astropy having refused it
    error: str | None = None  # why the card could not be read at all

    @property
    def warning(self) -> str | None:
        """The warning a fallback read deserves, or None for a card astropy read itself."""
        if self.repaired is None:
            return None
        return f"card {self.keyword} is not valid FITS (astropy: unparsable); read from the card " \
               f"image as {self.repaired!r}"


def read_card(header: fits.Header, key: str) -> CardValue | None:
    """The card ``key`` of ``header``, or None when absent, undefined (``KEY =``) or blank."""
    if key not in header:
        return None
    try:
        value = header[key]
    except fits.VerifyError as exc:
        return _repaired(header, key, exc)
    if _blank(value):
        return None
    return CardValue(key, value)


def _repaired(header: fits.Header, key: str, exc: fits.VerifyError) -> CardValue | None:
    """Read a card astropy refuses from a fixed copy: the value part of the image as text."""
    card = copy.copy(header.cards[key])  # fixing the copy leaves the caller's header untouched
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            card.verify("silentfix")
            value = card.value
    except (fits.VerifyError, ValueError) as fix_failed:
        return CardValue(key, None, error=f"Unparsable card ({key}): {exc}; {fix_failed}")
    if _blank(value):
        return None
    text = str(value).strip()
    return CardValue(key, text, repaired=text)


def _blank(value: Any) -> bool:
    return value is None or isinstance(value, fits.card.Undefined) or str(value).strip() == ""


class NotANumber(ValueError):
    """A value that cannot be read as a finite number; the message says what it is instead."""


def parse_number(value: Any) -> tuple[float, str | None]:
    """(number, note): a header value as a finite float. Text is accepted as written in the wild:
    surrounding blanks, and a decimal comma (the note says it was read as a decimal point).
    Raises NotANumber."""
    note = None
    if isinstance(value, str):
        text = value.strip()
        if _DECIMAL_COMMA.fullmatch(text):
            text, note = text.replace(",", "."), f"decimal comma in {value.strip()!r} read as a decimal point"
        value = text.replace("D", "E").replace("d", "e") if re.fullmatch(r"[\d.+\-eEdD]+", text) else text
    try:
        number = float(value)
    except (TypeError, ValueError, OverflowError):
        raise NotANumber("not a number") from None
    if not math.isfinite(number):
        raise NotANumber("not finite")
    return number, note


def setting_text(value: Any) -> str:
    """A setting as text: integers without a decimal point (GAIN = 0.0 is "0"), others as
    written, so the same setting always gives the same text whatever the header's type."""
    if isinstance(value, bool):
        return str(value)
    if isinstance(value, int | float) and math.isfinite(value) and float(value).is_integer():
        return str(int(value))
    if isinstance(value, float):
        return repr(value)
    text = str(value).strip()
    if re.fullmatch(r"[+-]?\d+(?:\.\d*)?", text) or _DECIMAL_COMMA.fullmatch(text):
        return setting_text(parse_number(text)[0])
    return text


def shown(value: Any, limit: int = 60) -> str:
    """A card value for a message: one line, cut to ``limit`` characters (a COMMENT that an
    identify rule names can be paragraphs)."""
    text = " ".join(str(value).split())
    return text if len(text) <= limit else text[:limit - 3] + "..."

"""The header a product or master is written with: only cards FITS can carry, and a note of
every card that had to change.

Raw headers carry what cameras and broken copies put there: control characters or non-ASCII
bytes in OBJECT (astropy reads the file, but refuses to write the card back), numbers such as
``1E999`` that parse as inf. One such card used to fail the write of a product or of a whole
master. Cards copied from a file are fixed instead (non-printable characters become ``?``; a
non-finite number or an unparsable card is dropped), and the product says so in ``CF_HFIX``
and a HISTORY line. Values computed by code (a CCDData whose header is still a dict) are never
quietly changed: a NaN or inf there is a bug upstream, refused with :class:`NonFiniteCardError`
naming the card.
"""

from __future__ import annotations

import logging
import math
import re
import warnings
from collections.abc import Mapping
from typing import Any

from astropy.io import fits
from astropy.io.fits.verify import VerifyError, VerifyWarning

from ccdflow.framework.engine.errors import UnprocessableInputError

log = logging.getLogger("ccdflow.fitsio")

_NON_PRINTABLE = re.compile(r"[^\x20-\x7e]")
#: Card text that may not survive a write: non-printable or non-ASCII characters, a number with a
#: 3-digit exponent (1E999 parses as inf), NaN/inf spelt out (unparsable in FITS), or a number
#: with a decimal comma (ZWO ASIImg's ``EXPTIME = 6,4E-05``: astropy cannot parse it).
_SUSPECT = re.compile(r"[^\x20-\x7e]|=\s*[-+]?[\d.]+\s*[EeDd]\s*[-+]?\d{3}|=\s*[-+]?(?:nan|inf)"
                      r"|^.{8}=\s*[-+]?\d*,\d", re.IGNORECASE)


class NonFiniteCardError(UnprocessableInputError):
    """A header card would be written with NaN or inf, which FITS cannot store."""


def writable_header(meta: fits.Header | Mapping[str, Any], notes: list[str] | None = None) -> fits.Header:
    """A copy of a CCDData's header (or meta dict) that FITS can write; see the module docstring.
    What had to change is appended to ``notes`` (one line per card)."""
    if not isinstance(meta, fits.Header):
        return _from_mapping(meta, notes)
    header = meta.copy()
    # Only cards read from a file can be wrong (astropy validates what code assigns), and only
    # their text says so: the full check of every card would double the cost of writing.
    found = [note for card in header.cards if _suspect(card) and (note := _card_problem(card))]
    if not found:
        return header
    notes = [] if notes is None else notes
    notes += found
    header = fits.Header([c for c in (_fixed_card(c) if _suspect(c) else c for c in header.cards)
                          if c is not None])
    header["CF_HFIX"] = (len(notes), "header cards fixed or dropped to write FITS")
    for note in notes:
        header.add_history(f"ccdflow: {note}"[:72])
    log.warning("header cards changed so FITS can carry them: %s", "; ".join(notes))
    return header


def _suspect(card: fits.Card) -> bool:
    image = getattr(card, "_image", None)  # the 80 characters as read: astropy parses lazily
    return isinstance(image, str) and _SUSPECT.search(image) is not None


def _card_problem(card: fits.Card) -> str | None:
    """Why ``card`` cannot be written as it is, or None."""
    before = getattr(card, "_image", None)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            after = str(card)  # formats, and verifies (fixing what astropy can), the card image
            value = card.value
    except (ValueError, VerifyError):
        fixed = _fixed_card(card)
        return f"{card.keyword}: " + ("non-printable characters replaced by '?'" if fixed is not None
                                      else "unreadable card dropped")
    if _non_finite(value):
        return f"{card.keyword}: non-finite value {value!r} dropped"
    if before and after.rstrip() != before.rstrip():  # e.g. NAN, unparsable, made the text 'NAN'
        return f"{card.keyword}: unparsable value {before[10:].strip()} kept as the text {value!r}"
    return None


def _fixed_card(card: fits.Card) -> fits.Card | None:
    """``card`` itself when it is fine, a copy with non-printable characters replaced, or None
    (drop it) when not even that can be written."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            str(card)
            ok = not _non_finite(card.value)
        return card if ok else None
    except (ValueError, VerifyError):
        pass
    image = getattr(card, "_image", None)  # the 80 characters as read: astropy parses lazily
    if not image:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", VerifyWarning)
            fixed = fits.Card.fromstring(_NON_PRINTABLE.sub("?", image))
            str(fixed)
            return None if _non_finite(fixed.value) else fixed
    except (ValueError, VerifyError):
        return None


def printable(text: str) -> str:
    """``text`` with every character a FITS card cannot hold replaced by '?'."""
    return _NON_PRINTABLE.sub("?", text)


def _from_mapping(meta: Mapping[str, Any], notes: list[str] | None) -> fits.Header:
    """A header from a meta dict, whose values code computed: a NaN or inf is refused by name."""
    header = fits.Header()
    for key, item in meta.items():
        value, comment = item if isinstance(item, tuple) and len(item) == 2 else (item, None)
        if _non_finite(value):
            raise NonFiniteCardError(
                "header card would be written with a non-finite number; FITS cannot store it",
                keyword=str(key), value=value, expected="a finite number")
        if isinstance(value, str) and _NON_PRINTABLE.search(value):
            value = _NON_PRINTABLE.sub("?", value)
            log.warning("header card %s: non-printable characters replaced by '?'", key)
            if notes is not None:
                notes.append(f"{key}: non-printable characters replaced by '?'")
        header[key] = (value, comment)
    return header


def _non_finite(value: Any) -> bool:
    if isinstance(value, bool | str) or value is None:
        return False
    try:
        return not math.isfinite(abs(value)) if isinstance(value, complex) else not math.isfinite(value)
    except TypeError:
        return False

"""Colour (Bayer) sensors: which colour each pixel of a raw or trimmed frame sees.

The one place that reads ``BAYERPAT``, ``XBAYROFF``/``YBAYROFF`` and ``ROWORDER``. A one-shot
colour camera puts a 2x2 cell of red, green and blue filters over its pixels; ccdflow keeps the
frames raw (no debayering) but must know the colours: a flat divided by one global median
carries the lamp's or the sky's colour into every science frame (the colours come out
tinted), so normalised masters are brought to 1 per colour channel, and statistics are taken
per channel.

The convention (NINA, SharpCap, ASIImg, INDI, Siril, PixInsight, ASTAP): ``BAYERPAT`` names the
2x2 cell in reading order, starting at the image's top-left pixel, shifted by ``XBAYROFF``
columns and ``YBAYROFF`` rows. "Top" follows ``ROWORDER``: ``TOP-DOWN`` (most camera drivers,
and the reading when the keyword is absent) means the first row stored in the file is the top;
``BOTTOM-UP`` (the FITS convention) means it is the bottom, so on an image with an even number
of rows the pattern's row parity is flipped in the stored array.

Inside ccdflow a :class:`Mosaic` holds the cell as it lies in the stored array (numpy row 0,
column 0), whatever the convention. After trimming, the product says the pattern of its own
pixel (0, 0): ``BAYERPAT`` is rewritten in the file's own ``ROWORDER`` convention and
``XBAYROFF``/``YBAYROFF`` become 0, so a reader that ignores the offsets (several do) still
debayers correctly; ``CF_BAYRW`` keeps what the raw header said.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError

CHANNELS = ("R", "G", "B")
#: The four 2x2 Bayer cells (the greens on a diagonal), in reading order.
PATTERNS = ("RGGB", "BGGR", "GRBG", "GBRG")
PATTERN, XOFF, YOFF, ROWORDER = "BAYERPAT", "XBAYROFF", "YBAYROFF", "ROWORDER"
#: Values some programs write on monochrome cameras: no pattern.
_NO_PATTERN = {"", "NONE", "MONO", "N/A", "FALSE", "F"}
#: The card that keeps the raw header's pattern once trimming has rewritten it.
RAW_CARD = "CF_BAYRW"


@dataclass(frozen=True)
class Mosaic:
    """A Bayer cell as it lies in the stored array: ``cell[2 * r + c]`` is the colour of every
    pixel whose row is r and column is c modulo 2. ``bottom_up`` remembers the file's
    ``ROWORDER``, to write the pattern back in the file's own convention."""

    cell: str
    bottom_up: bool = False

    def colour(self, row: int, col: int) -> str:
        return self.cell[2 * (row % 2) + col % 2]

    def views(self, channel: str) -> list[tuple[slice, slice]]:
        """The strided views (rows, columns) of ``channel``'s pixels: two for green."""
        return [(slice(r, None, 2), slice(c, None, 2))
                for r in (0, 1) for c in (0, 1) if self.colour(r, c) == channel]

    def channel_index(self, shape: tuple[int, int]) -> np.ndarray:
        """Per pixel, the index in :data:`CHANNELS` of its colour."""
        out = np.empty(shape, np.uint8)
        for i, channel in enumerate(CHANNELS):
            for rows, cols in self.views(channel):
                out[rows, cols] = i
        return out

    def shifted(self, row0: int, col0: int) -> Mosaic:
        """The mosaic of the sub-array starting at (``row0``, ``col0``)."""
        return Mosaic("".join(self.colour(row0 + r, col0 + c) for r in (0, 1) for c in (0, 1)),
                      self.bottom_up)

    def pattern(self, height: int) -> str:
        """``BAYERPAT`` with zero offsets for an image of ``height`` rows, in the file's
        ``ROWORDER`` convention (read from the top row, which is the last stored one when
        bottom-up)."""
        first = (height - 1) % 2 if self.bottom_up else 0
        return "".join(self.colour(first + (r if not self.bottom_up else -r), c)
                       for r in (0, 1) for c in (0, 1))


def _offset(header: fits.Header, key: str, path: str | None) -> int:
    value = header.get(key, 0)
    try:
        number = float(str(value).strip() or 0)
    except ValueError:
        number = float("nan")
    if not np.isfinite(number) or number != int(number) or number < 0:
        raise UnprocessableInputError("Bayer offset is not a whole number of pixels", path=path,
                                      keyword=key, value=value, expected="0, 1, 2...")
    return int(number)


def mosaic_of(header: fits.Header, height: int, path: str | None = None) -> Mosaic | None:
    """The mosaic of an image of ``height`` rows with this header, or None for a monochrome one.

    A pattern ccdflow cannot place (an X-Trans 6x6 cell, a misspelt value) or a ``ROWORDER``
    that is neither convention is refused: treating a colour frame as grey is the silent tint
    this module exists to prevent."""
    raw = header.get(PATTERN)
    text = "" if raw is None or isinstance(raw, bool) and not raw else str(raw).strip().upper()
    if text in _NO_PATTERN:
        return None
    if text not in PATTERNS:
        raise UnprocessableInputError(
            "Bayer pattern not understood (X-Trans and other cells are not supported)", path=path,
            keyword=PATTERN, value=raw, expected="RGGB, BGGR, GRBG or GBRG")
    order = str(header.get(ROWORDER, "TOP-DOWN")).strip().upper()
    if order not in ("TOP-DOWN", "BOTTOM-UP"):
        raise UnprocessableInputError("row order not understood", path=path, keyword=ROWORDER,
                                      value=header.get(ROWORDER), expected="TOP-DOWN or BOTTOM-UP")
    bottom_up = order == "BOTTOM-UP"
    xoff, yoff = _offset(header, XOFF, path), _offset(header, YOFF, path)

    def colour(row: int, col: int) -> str:  # stored (row, col) -> colour, by the convention
        top_row = (height - 1 - row) if bottom_up else row
        return text[2 * ((top_row + yoff) % 2) + (col + xoff) % 2]

    return Mosaic("".join(colour(r, c) for r in (0, 1) for c in (0, 1)), bottom_up)


def follow_trim(header: fits.Header, height: int, rows: Sequence[tuple[int, int]],
                cols: Sequence[tuple[int, int]], path: str | None = None) -> None:
    """Rewrite ``header``'s pattern cards for the array made of the row ranges ``rows`` and
    column ranges ``cols`` (half-open, in order) of an image of ``height`` rows.

    Ranges kept side by side must keep the colours alternating: an odd gap between two
    amplifiers' sections would put two reds next to each other, which no pattern describes,
    and is refused."""
    mosaic = mosaic_of(header, height, path)
    if mosaic is None:
        return
    for ranges, axis in ((rows, "row"), (cols, "column")):
        done, parities = 0, set()
        for start, stop in ranges:
            parities.add((start - done) % 2)
            done += stop - start
        if len(parities) > 1:
            raise UnprocessableInputError(
                f"the trim sections {list(ranges)} ({axis}s) join parts of a Bayer mosaic out of "
                "step (an odd gap between them): the colours would not alternate", path=path,
                keyword=PATTERN, value=header.get(PATTERN),
                expected="sections whose gaps are an even number of pixels")
    trimmed = mosaic.shifted(rows[0][0], cols[0][0])
    new_height = sum(stop - start for start, stop in rows)
    if RAW_CARD not in header:
        raw = f"{str(header[PATTERN]).strip()} x{header.get(XOFF, 0)} y{header.get(YOFF, 0)}"
        header[RAW_CARD] = (raw, "raw BAYERPAT XBAYROFF YBAYROFF")
    header[PATTERN] = (trimmed.pattern(new_height), "Bayer cell at pixel (1,1), after trim")
    for key in (XOFF, YOFF):
        if key in header:
            header[key] = (0, "Bayer offset (pattern rewritten after trim)")


def channel_keyword(keyword: str, channel: str) -> str:
    """The per-channel card of a statistic: its keyword cut to 7 characters plus the channel
    (``CF_MED`` -> ``CF_MEDR``, ``CF_LEVEL`` -> ``CF_LEVER``, ``CF_NOISE`` -> ``CF_NOISG``)."""
    return keyword[:7] + channel


def channel_levels(data: np.ndarray, mask: np.ndarray | None, mosaic: Mosaic | None,
                   statistic: str = "median") -> dict[str, float]:
    """``statistic`` (median or mean) of the good pixels of each colour channel; one entry ''
    for a monochrome frame. A pixel is good when finite and not in ``mask`` (True = bad; None:
    every finite pixel). A channel without a good pixel gets NaN.

    The median is taken where the pixels lie (:func:`median_of`: no copy of a channel's good
    pixels, ~4x faster on a 2k flat) and is ``np.median``'s of them bit for bit."""
    from ccdflow.framework.numerics.exact_median import median_of  # numba: not on every import

    whole = (slice(None), slice(None))
    cuts = {"": [whole]} if mosaic is None else {c: mosaic.views(c) for c in CHANNELS}
    if statistic == "median":
        return {channel: median_of([data[v] for v in views],
                                   None if mask is None else [mask[v] for v in views])
                for channel, views in cuts.items()}
    good = np.isfinite(data) if mask is None else np.isfinite(data) & ~mask
    means = {}
    for channel, views in cuts.items():
        values = np.concatenate([data[r, c][good[r, c]] for r, c in views])
        means[channel] = float(np.mean(values)) if values.size else float("nan")
    return means


def divide_channels(data: np.ndarray, levels: dict[str, float], mosaic: Mosaic | None) -> None:
    """Divide ``data`` in place by each channel's level (the one level of a monochrome frame)."""
    if mosaic is None:
        data /= np.float32(levels[""])
        return
    for channel in CHANNELS:
        for rows, cols in mosaic.views(channel):
            data[rows, cols] /= np.float32(levels[channel])

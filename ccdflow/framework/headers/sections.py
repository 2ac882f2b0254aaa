"""FITS/IRAF section strings ('[x1:x2,y1:y2]', 1-based, inclusive) to numpy slices."""

from __future__ import annotations

import re

_RANGE = re.compile(r"^\s*(?:\*|:|(\d+)\s*:\s*(\d+))?\s*$")


class SectionSyntaxError(ValueError):
    """A section string could not be parsed or does not fit the frame (callers turn it into
    ccdflow's SectionError, which names the keyword and the file)."""


def _axis_slice(text: str, length: int | None, section: str) -> slice:
    match = _RANGE.match(text)
    if match is None:
        raise SectionSyntaxError(
            f"cannot parse section {section!r}: axis {text.strip()!r} is not 'a:b' or '*'")
    first, last = match.groups()
    if first is None:
        return slice(0, length)
    lo, hi = int(first), int(last)
    if lo < 1 or hi < 1:
        raise SectionSyntaxError(f"section {section!r} is 1-based; got a value below 1")
    if lo > hi:  # IRAF allows flipped ranges; we keep the pixels, not the flip
        lo, hi = hi, lo
    if length is not None and hi > length:
        raise SectionSyntaxError(f"section {section!r} reaches pixel {hi} but the axis has {length}")
    return slice(lo - 1, hi)


def parse_section(section: str, shape: tuple[int, int] | None = None) -> tuple[slice, slice]:
    """Return numpy ``(row_slice, col_slice)`` for a FITS section, checked against ``shape``."""
    text = section.strip()
    if not (text.startswith("[") and text.endswith("]")):
        raise SectionSyntaxError(f"cannot parse section {section!r}: expected '[x1:x2,y1:y2]'")
    axes = text[1:-1].split(",")
    if len(axes) != 2:
        raise SectionSyntaxError(f"cannot parse section {section!r}: expected two axes, got {len(axes)}")
    ny, nx = shape if shape is not None else (None, None)
    cols = _axis_slice(axes[0], nx, section)
    rows = _axis_slice(axes[1], ny, section)
    return rows, cols


def format_section(rows: slice, cols: slice) -> str:
    """Inverse of :func:`parse_section` for slices with explicit bounds."""
    return f"[{cols.start + 1}:{cols.stop},{rows.start + 1}:{rows.stop}]"

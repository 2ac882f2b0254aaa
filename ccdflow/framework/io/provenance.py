"""Provenance cards: which inputs, calibrations, parameters and software made a product."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from astropy.io import fits

from ccdflow import __version__
from ccdflow.framework.calibrations import card_tag
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import sha256_file


def card_text(value: object) -> str:
    """Any text as a FITS card value: printable ASCII kept, everything else (non-ASCII letters of
    a file name, control bytes) backslash-escaped, so the card can always be written and the
    original read back with ``codecs.decode(text, "unicode_escape")``."""
    return str(value).encode("unicode_escape").decode("ascii")


def stamp_calibration(header: fits.Header, kind: str, path: str | Path, checksum: str | None = None,
                      caldb_id: int | None = None) -> None:
    """Record one calibration: file name, SHA-256 and (when known) its caldb id."""
    tag = card_tag(kind)
    # full name, never cut: astropy writes long strings as CONTINUE cards
    cards.calibration_file(tag, kind).put(header, card_text(Path(path).name))
    cards.calibration_sha(tag).put(header, checksum or sha256_file(path))
    if caldb_id is not None:
        cards.calibration_id(tag, kind).put(header, caldb_id)


def stamp_receipt(header: fits.Header, kind: str, summary: Mapping[str, Any]) -> None:
    """Why a calibration was chosen: its time and temperature distance and any scaling.

    Keywords are CF_ + three letters of the type + two of the quantity (8 characters, no HIERARCH).
    """
    tag = kind.upper()[:3]
    if summary.get("dt_days") is not None:
        header[f"CF_{tag}DT"] = (round(float(summary["dt_days"]), 4), f"{kind}: days from frame")
    if summary.get("dtemp") is not None:
        header[f"CF_{tag}DK"] = (round(float(summary["dtemp"]), 3), f"{kind}: temperature diff (C)")
    if summary.get("scaling") is not None:
        header[f"CF_{tag}SC"] = (round(float(summary["scaling"]), 6), f"{kind}: exposure scale factor")
    if summary.get("waiver"):
        header[f"CF_{tag}WV"] = (card_text(summary["waiver"]), f"{kind}: gates waived")
    for line in summary.get("skipped", ()):  # a suspect master the frame would have used
        header.add_history(f"ccdflow caldb: {line}")


def stamp_product(
    header: fits.Header,
    raw_path: str | Path,
    config: ResolvedConfig,
    calibrations: Mapping[str, tuple[str | Path, str | None, int | None]],
    raw_checksum: str | None = None,
    receipts: Mapping[str, Mapping[str, Any]] | None = None,
    frame_type: str = "science",
) -> None:
    """Cards every reduced frame carries; ``calibrations`` maps type -> (path, sha256, caldb id),
    ``receipts`` type -> caldb receipt summary (why that master was chosen).

    ``CF_CHASH`` is the hash of what shaped the product: the instrument and the parameters of
    the steps in ``frame_type``'s recipe, so installing a plugin with a step this recipe does not
    use changes neither the product nor its ledger key."""
    cards.RAW.put(header, card_text(Path(raw_path).name))
    cards.RAWS.put(header, raw_checksum or sha256_file(raw_path))
    for kind, (path, checksum, caldb_id) in calibrations.items():
        stamp_calibration(header, kind, path, checksum, caldb_id)
    for kind, summary in (receipts or {}).items():
        stamp_receipt(header, kind, summary)
    cards.VERS.put(header, __version__)
    cards.CHASH.put(header, config.recipe_hash(frame_type))
    cards.INST.put(header, config.instrument.name)

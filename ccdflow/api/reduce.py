"""``ccdflow.reduce_frame``: one raw frame to a science-ready CCDData in one call."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccdflow.api.inputs import Instrument, given_calibrations, instrument_setup, opened, param_strings

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ccdflow.api.caldb import CalDB
    from ccdflow.pipeline.single import Given

log = logging.getLogger("ccdflow.api")


def reduce_frame(
    raw: str | Path | CCDData,
    *,
    bias: Given | None = None,
    dark: Given | None = None,
    flat: Given | None = None,
    bpm: Given | None = None,
    calibrations: Mapping[str, Given] | None = None,
    instrument: Instrument | None = None,
    caldb: CalDB | str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> CCDData:
    """Reduce one raw frame (a FITS file, or a CCDData with its header) with the frame type's
    recipe, as `ccdflow night` reduces it, and return the product (data in electrons, its
    ``uncertainty``, ``mask`` and the DQ bits in ``flags``, provenance in ``header``).

    Calibrations are files or CCDData (``calibrations`` for a plugin's types, e.g. ``fringe``).
    Those not given are the caldb's best when ``caldb`` is given; otherwise their steps are
    SKIPPED, and the header says why (``CF_<tag>N``, HISTORY) and a warning is logged.
    ``params`` overrides step parameters as ``-p`` does: ``{"overscan.method": "median"}``.
    Nothing is written unless ``out`` names a file; with a caldb too, the product is recorded in
    its ledger (``ccdflow caldb used-by``).
    """
    from ccdflow.pipeline.single import Setup, reduce_one

    manager, forced, _ = instrument_setup(instrument)
    given = given_calibrations(manager, calibrations, bias=bias, dark=dark, flat=flat, bpm=bpm)
    with opened(caldb) as db:
        setup = Setup(manager, forced, params=param_strings(params), db=db, given=given)
        done = reduce_one(setup, raw, None if out is None else Path(out))
    for kind, reason in done.absent.items():
        log.warning("%s: no %s applied: %s", done.meta.path or "raw frame", kind, reason)
    return done.ccd

"""Reduce frames with masters already built: the per-frame work shared by demo and night runs."""

from __future__ import annotations

import hashlib
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.nddata import CCDData

from ccdflow.framework.calibrations import calibration_type, for_frame_type
from ccdflow.framework.engine.caltype import SETUP_FIELDS
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.errors import CalibrationChangedError, UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta, binning_text, shape_text
from ccdflow.framework.engine.recipe import needed_calibrations, run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import read_ccd, read_file_hashed, read_product
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.framework.io.provenance import card_text, stamp_product
from ccdflow.framework.numerics.dead_readout import refuse_dead_readout

if TYPE_CHECKING:
    from ccdflow.framework.engine.instrument import MatchRule
    from ccdflow.framework.engine.plugins import PluginManager


@dataclass
class MasterRef:
    """A master calibration on disk, loaded once and shared by every frame that uses it."""

    kind: str
    path: Path
    ccd: CCDData
    checksum: str
    exposure_time: float
    temperature: float | None
    filter: str | None
    caldb_id: int | None = None

    @classmethod
    def load(cls, kind: str, path: str | Path, caldb_id: int | None = None,
             checksum: str | None = None) -> MasterRef:
        """Read a master and hash the same bytes; with ``checksum`` (the caldb record's), a file
        whose bytes differ is refused with CalibrationChangedError instead of being applied."""
        content, actual = read_file_hashed(path)
        if checksum is not None and actual != checksum:
            where = f"caldb record {caldb_id}" if caldb_id is not None else "the expected checksum"
            raise CalibrationChangedError(
                f"master {kind} {path} has changed since it was registered: SHA-256 {actual[:16]}... "
                f"but {where} says {checksum[:16]}...; not applied (see `ccdflow caldb verify`)")
        try:
            ccd = read_product(path, content=content)
        except (OSError, KeyError, ValueError, TypeError) as exc:
            raise UnprocessableInputError(f"master {kind} cannot be read ({exc})",
                                          path=str(path)) from None
        return cls._prepared(kind, Path(path), ccd, actual, caldb_id)

    @classmethod
    def from_ccd(cls, kind: str, ccd: CCDData, caldb_id: int | None = None) -> MasterRef:
        """A master handed over in memory (the Python API): recorded as ``in-memory`` with the
        SHA-256 of its pixels (:func:`data_sha256`), since it has no file to name."""
        return cls._prepared(kind, Path(IN_MEMORY), ccd, data_sha256(ccd), caldb_id)

    @classmethod
    def _prepared(cls, kind: str, path: Path, ccd: CCDData, checksum: str,
                  caldb_id: int | None) -> MasterRef:
        ccd = calibration_type(kind).prepare(ccd)
        # a ccdflow master says it in CF_ cards; a foreign one (ccdproc) in the usual keywords
        h = ccd.header
        temp = cards.TEMP.get(h, h.get("CCD-TEMP"))
        exposure = cards.EXPT.get(h, float(h.get("EXPTIME", 0.0)))
        return cls(kind, path, ccd, checksum, exposure, None if temp is None else float(temp),
                   cards.FILT.get(h, h.get("FILTER")) or None, caldb_id)


#: The file name provenance cards record for a frame or master handed over in memory.
IN_MEMORY = "in-memory"


def data_sha256(ccd: CCDData) -> str:
    """SHA-256 of a frame's pixels as little-endian float32: the checksum an in-memory frame or
    master is recorded with (the same pixels always give the same checksum, whatever held them)."""
    return hashlib.sha256(np.ascontiguousarray(ccd.data, dtype="<f4").tobytes()).hexdigest()


#: Master header card -> (FrameMeta attribute, text), compared before a master is applied.
_MATCH_CARDS = {
    cards.INST.keyword: ("instrument", "instrument"), cards.DET.keyword: ("detector", "detector"),
    cards.BIN.keyword: ("binning", "binning"), cards.READM.keyword: ("readout_mode", "readout mode"),
    cards.RAWSH.keyword: ("shape", "raw shape"), cards.CAM.keyword: ("camera", "camera"),
    cards.GSET.keyword: ("gain_setting", "gain setting"), cards.OFFS.keyword: ("offset", "offset"),
}


def check_master(kind: str, master: MasterRef, meta: FrameMeta) -> None:
    """Refuse a master made for another setup (a flat of another filter, another binning...).

    Compares the master's normalised CF_ cards with the frame; a foreign master without them is
    checked by pixel shape only (in the steps)."""
    header = master.ccd.header
    cards = {**_MATCH_CARDS, **calibration_type(kind).match_cards()}
    frame_values = {
        "binning": binning_text(meta.binning), "shape": shape_text(meta.shape),
    }
    problems = []
    for card, (attr, text) in cards.items():
        if card not in header:
            continue
        want = frame_values.get(attr, getattr(meta, attr))
        have = header[card]
        if str(have or "") != str(want or ""):
            problems.append(f"{text} is {have!r}, the frame's is {want!r}")
    if problems:
        raise UnprocessableInputError(
            f"master {kind} {master.path.name} does not match the frame: {'; '.join(problems)}",
            path=str(meta.path),
        )


def observing_night(meta: FrameMeta) -> str:
    """The night a frame belongs to: its UTC date 12 h earlier, so one night never splits
    at midnight UTC for observatories in the Americas or Europe.

    A scanned frame's date is within 1900-2200 (``limits.check_date``); a FrameMeta made another
    way with 0001-01-01 would overflow the subtraction, and is refused by name instead."""
    try:
        return (meta.date_obs - timedelta(hours=12)).date().isoformat()
    except OverflowError:
        raise UnprocessableInputError(
            "observation time has no observing night", path=meta.path, keyword="date_obs",
            value=meta.date_obs.isoformat(), expected="a time from 1900 to 2200") from None


def group_key(meta: FrameMeta, rule: MatchRule | None = None) -> tuple:
    """Frames that may be combined into one master share this key (never across nights): the
    night and setup (:data:`SETUP_FIELDS`: never two cameras or gain settings in one master),
    and what the frame's calibration type adds (a dark's exposure time and temperature, binned
    by ``rule``'s tolerance when given)."""
    base = (meta.frame_type, observing_night(meta), *(getattr(meta, f) for f in SETUP_FIELDS))
    kind = for_frame_type(meta.frame_type)
    return base if kind is None else (*base, *kind.group_key(meta, rule))


def group_frames(frames: Iterable[FrameMeta],
                 rule_of: Callable[[FrameMeta], MatchRule | None] | None = None
                 ) -> dict[tuple, list[FrameMeta]]:
    """Frames by :func:`group_key`; ``rule_of(frame)`` is the caldb rule of the calibration type
    made from it (the frame's instrument's), so a widened tolerance widens the groups too."""
    groups: dict[tuple, list[FrameMeta]] = defaultdict(list)
    rules: dict[tuple, MatchRule | None] = {}
    for meta in frames:
        rule = None if rule_of is None else rule_of(meta)
        key = group_key(meta, rule)
        groups[key].append(meta)
        rules.setdefault(key, rule)
    out: dict[tuple, list[FrameMeta]] = {}
    for key, metas in groups.items():
        kind = for_frame_type(metas[0].frame_type)
        parts = [metas] if kind is None else kind.split_group(metas, rules[key])
        for i, part in enumerate(parts):
            out[key if len(parts) == 1 else (*key, i)] = part
    return out


def reduce_frame(
    meta: FrameMeta,
    manager: PluginManager,
    config: ResolvedConfig,
    masters: Mapping[str, MasterRef],
    out_path: Path,
    *,
    receipts: Mapping[str, Any] | None = None,
    raw_checksum: str | None = None,
    timings: dict[str, float] | None = None,
    raw_content: bytes | None = None,
    absent: Mapping[str, str] | None = None,
) -> tuple[CCDData, str]:
    """Read the raw file, :func:`reduce_ccd` it and write the product with provenance.

    ``raw_content`` and ``raw_checksum`` are the raw file's bytes and their SHA-256 from one read
    (:func:`read_file_hashed`); without them the file is read and hashed here, also in one read.
    Returns the product and the SHA-256 of the file written.
    """
    start = time.perf_counter()
    if raw_content is None:
        raw_content, raw_checksum = read_file_hashed(meta.file)
    ccd = read_ccd(meta.file, hdu=meta.pixel_hdu(config.instrument.data_hdu), content=raw_content)
    read_seconds = time.perf_counter() - start
    ccd = reduce_ccd(ccd, meta, manager, config, masters, receipts=receipts, timings=timings,
                     raw_name=meta.file, raw_checksum=raw_checksum, absent=absent, owns_pixels=True)
    start = time.perf_counter()
    checksum = write_ccd(ccd, out_path)
    if timings is not None:
        timings.update(read=read_seconds, write=time.perf_counter() - start)
    return ccd, checksum


def reduce_ccd(
    ccd: CCDData,
    meta: FrameMeta,
    manager: PluginManager,
    config: ResolvedConfig,
    masters: Mapping[str, MasterRef],
    *,
    raw_name: str | Path,
    raw_checksum: str | None,
    receipts: Mapping[str, Any] | None = None,
    timings: dict[str, float] | None = None,
    absent: Mapping[str, str] | None = None,
    owns_pixels: bool = False,
) -> CCDData:
    """Run the frame type's recipe on raw pixels with the given masters and stamp the product's
    provenance; nothing is read or written (the night, `ccdflow reduce` and the Python API
    share this, so their products are the same).

    ``receipts`` (caldb selection receipts) are summarised in the header and handed to the steps
    as ``StepContext.receipts``; ``timings`` receives each step's seconds. ``absent`` says why
    each calibration the recipe wants but is not in ``masters`` is absent (see
    :func:`~ccdflow.framework.engine.calibration_policy.choose`): its step is SKIPPED with that
    reason. ``raw_name`` and ``raw_checksum`` are what ``CF_RAW``/``CF_RAWS`` record. The
    product carries its quality figures (``CF_Q...`` cards, see
    :mod:`~ccdflow.framework.builders.frame_qa`; ``timings["qa"]`` their cost).
    ``owns_pixels``: ``ccd``'s arrays were made for this call and no caller keeps them, so the
    steps may overwrite them (:class:`StepContext`); a caller's own frame is never changed.
    """
    refuse_dead_readout(ccd, meta)  # all NaN or all one value: no product of 0 finite pixels
    needed = needed_calibrations(config, meta.frame_type)
    summaries = {k: r.summary() for k, r in (receipts or {}).items() if k in needed}
    context = StepContext(meta, config.instrument, receipts=summaries, absent=dict(absent or {}),
                          owns_pixels=owns_pixels)
    for kind in needed:
        if kind in masters:
            check_master(kind, masters[kind], meta)
    cal_frames = {k: masters[k].ccd if k in masters else None for k in needed}
    ccd = run_recipe(manager, ccd, config, context, cal_frames)
    stamp_product(
        ccd.header, raw_name, config,
        {k: (m.path, m.checksum, m.caldb_id) for k, m in masters.items() if k in needed},
        raw_checksum=raw_checksum,
        receipts=summaries, frame_type=meta.frame_type,
    )
    # the filter as the header map read it, whatever the camera's keyword: `stack` compares it
    cards.FILT.put(ccd.header, card_text(meta.filter or ""))
    start = time.perf_counter()
    # measured once here, on the frame in memory (the night, `reduce` and the API alike); a
    # re-run reads them back from the cards
    from ccdflow.framework.builders import frame_qa  # numba kernels, scipy.optimize: science only

    frame_qa.write_cards(ccd.header, frame_qa.measure(ccd))
    if timings is not None:
        timings.update(context.timings, qa=time.perf_counter() - start)
    return ccd

"""Single frames outside a night: what `ccdflow reduce` and the Python API (``ccdflow.reduce_frame``)
share with the night's :func:`~ccdflow.pipeline.tasks.science_task`.

The night chooses every calibration from the caldb; here a caller may also hand some over (files
or, from Python, in-memory ``CCDData``). Those given are used as given (a file the caldb knows is
pinned, so it passes the same gates and its id and receipt are recorded); the others are the
caldb's best under the instrument's ``calibrations:`` policy, exactly as in the night; with no
caldb they are absent, and the step is SKIPPED with that reason in the product's ``CF_<tag>N``
card and HISTORY, as the night records an absent calibration. The recipe, its provenance cards
and the ledger row are the night's own (:func:`~ccdflow.framework.builders.reduction.reduce_ccd`,
``CalDB.record_product``), so a frame reduced here equals the night's product of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeAlias

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework import dq
from ccdflow.framework.builders.reduction import IN_MEMORY, MasterRef, data_sha256, reduce_ccd
from ccdflow.framework.engine.calibration_policy import choose
from ccdflow.framework.engine.config import ResolvedConfig, build
from ccdflow.framework.engine.errors import ConfigError, MissingCalibrationError, UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.recipe import calibration_needs
from ccdflow.framework.io.fitsio import raw_frame, read_ccd, read_file_hashed
from ccdflow.framework.io.fitswrite import write_ccd

if TYPE_CHECKING:
    from ccdflow.caldb import CalDB, Receipt
    from ccdflow.framework.engine.plugins import PluginManager

#: A calibration as a caller may give it: a master file, or (Python) a master in memory.
Given: TypeAlias = str | Path | CCDData


@dataclass
class Setup:
    """How single frames are reduced: the plugins (with any instrument files), the instrument
    every frame is read as (None: each frame's own), the configuration layers, the caldb (None:
    none) and the calibrations given."""

    manager: PluginManager
    instrument: str | None = None
    config_files: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    db: CalDB | None = None
    given: dict[str, Given] = field(default_factory=dict)
    _configs: dict[str, ResolvedConfig] = field(default_factory=dict)
    _masters: dict[str, MasterRef] = field(default_factory=dict)
    _chosen: dict[int, MasterRef] = field(default_factory=dict)

    def config(self, instrument: str) -> ResolvedConfig:
        """The resolved configuration of a frame's instrument (built once)."""
        name = self.instrument or instrument
        if name not in self._configs:
            self._configs[name] = build(self.manager, instrument=name,
                                        config_files=self.config_files, params=self.params)
        return self._configs[name]

    def master(self, kind: str) -> MasterRef:
        """A given calibration, loaded once: a file is hashed as read, and carries its caldb id
        when the caldb has a record of those bytes; one in memory is recorded as ``in-memory``."""
        if kind not in self._masters:
            value = self.given[kind]
            if isinstance(value, CCDData):
                self._masters[kind] = MasterRef.from_ccd(kind, value)
            else:
                ref = MasterRef.load(kind, value)
                ref.caldb_id = None if self.db is None else self.db.id_of(ref.checksum)
                self._masters[kind] = ref
        return self._masters[kind]

    def chosen(self, kind: str, record: dict[str, Any]) -> MasterRef:
        """A master the caldb chose, loaded once for every frame that uses it (its bytes checked
        against the record's SHA-256)."""
        if record["id"] not in self._chosen:
            self._chosen[record["id"]] = MasterRef.load(kind, record["path"], record["id"],
                                                        record["sha256"])
        return self._chosen[record["id"]]


@dataclass
class Reduced:
    """One reduced frame: the product, where it was written (None: kept in memory), its SHA-256
    and ledger row, and which calibrations made it (type -> path, sha256, caldb id) or were
    absent (type -> why)."""

    ccd: CCDData
    meta: FrameMeta
    path: Path | None
    sha256: str | None
    product_id: int | None
    calibrations: dict[str, dict[str, Any]]
    absent: dict[str, str]


def read_raw(raw: str | Path | CCDData, setup: Setup
             ) -> tuple[FrameMeta, CCDData, str, str]:
    """(metadata, raw pixels, name and SHA-256 for CF_RAW/CF_RAWS) of a raw file, read once, or
    of a raw frame in memory (see :func:`meta_of`)."""
    if not isinstance(raw, CCDData):
        meta = meta_of(raw, setup.manager, setup.instrument)
        content, checksum = read_file_hashed(raw)
        hdu = meta.pixel_hdu(setup.config(meta.instrument).instrument.data_hdu)
        return meta, read_ccd(meta.file, hdu=hdu, content=content), meta.file, checksum
    if raw.uncertainty is not None:
        raise UnprocessableInputError("the raw frame in memory has an uncertainty: a reduction starts "
                                      "from raw pixels, and its uncertainty step computes their noise")
    meta = meta_of(raw, setup.manager, setup.instrument)
    ccd = raw_frame(np.array(raw.data, dtype=np.float32), _image_header(raw), str(raw.unit or "adu"))
    if raw.mask is not None and np.any(raw.mask):  # the caller's own mask: kept, as MASKED
        ccd.mask, ccd.flags = dq.flagged(ccd, np.asarray(raw.mask, bool), dq.MASKED)
    return meta, ccd, IN_MEMORY, data_sha256(ccd)


def meta_of(raw: str | Path | CCDData, manager: PluginManager,
            instrument: str | None = None) -> FrameMeta:
    """A raw frame's metadata: a file's headers, or the header of a frame in memory, read through
    the instrument's header map (``instrument``, else the one that identifies it) like a file's:
    a missing or absurd value is refused by name, never defaulted."""
    from ccdflow.framework.headers.header_map import normalise
    from ccdflow.framework.headers.scan import describe_identity, scan_file

    if not isinstance(raw, CCDData):
        return scan_file(raw, manager, instrument)
    headers: dict[int | str, fits.Header] = {0: _image_header(raw)}
    name = instrument or manager.identify(headers)
    if name is None:
        raise UnprocessableInputError(f"no instrument recognises the raw frame's header "
                                      f"({describe_identity(headers, manager)}); name one")
    # the pixels are in hand: the instrument's data_hdu (which HDU of a file) does not apply
    return normalise(manager.instrument(name).model_copy(update={"data_hdu": 0}), headers, None)


def _image_header(ccd: CCDData) -> fits.Header:
    """A copy of a frame's header (CCDData.meta may be a plain dict) saying its shape, as a
    file's image header would."""
    if ccd.data is None or np.ndim(ccd.data) != 2:
        raise UnprocessableInputError("the raw frame in memory is not a 2-D image")
    # Header(header) shares the caller's Card objects, which update() would then rewrite
    header = ccd.header.copy() if isinstance(ccd.header, fits.Header) else fits.Header(ccd.header)
    header.update(NAXIS=2, NAXIS1=ccd.data.shape[1], NAXIS2=ccd.data.shape[0])
    return header


def choose_masters(setup: Setup, config: ResolvedConfig, meta: FrameMeta
                   ) -> tuple[dict[str, MasterRef], dict[str, Receipt], dict[str, str]]:
    """Masters, caldb receipts and why each other calibration is absent, for one frame (see the
    module docstring). A given calibration the recipe does not use is refused by name: dropping
    it would be silent."""
    needs = calibration_needs(config, meta.frame_type)
    unused = sorted(set(setup.given) - set(needs.wanted))
    if unused:
        why = "; ".join(f"{k}: {needs.not_taken.get(k, 'no step of the recipe uses it')}" for k in unused)
        raise ConfigError(f"{meta.frame_type} recipe of instrument {config.instrument.name!r} does "
                          f"not use the calibration given: {why}")
    receipts: dict[str, Receipt] = {}

    def find(kind: str) -> MasterRef:
        if kind in setup.given:
            ref = setup.master(kind)
            if setup.db is not None and ref.caldb_id is not None:  # same gates as a choice
                _, receipts[kind] = setup.db.best(kind, meta, rule(kind), pin=ref.caldb_id)
            return ref
        if setup.db is None:
            raise MissingCalibrationError(f"no {kind} given and no caldb to choose one from")
        record, receipts[kind] = setup.db.best(kind, meta, rule(kind))
        return setup.chosen(kind, record)

    def rule(kind: str) -> Any:
        return config.instrument.match_rule(kind, setup.manager)

    if setup.db is not None:
        masters, absent = choose(needs, find, config)
    else:  # nothing to choose from: what is not given is absent, and says so
        masters = {k: find(k) for k in needs.wanted if k in setup.given}
        absent = {**needs.not_taken, **{k: "none given, and no caldb to choose one from"
                                        for k in needs.wanted if k not in setup.given}}
    return masters, receipts, absent


#: The calibrations of one frame as :func:`choose_masters` returns them (masters, receipts, why
#: each other one is absent), or the error choosing them raised.
Chosen: TypeAlias = "tuple[dict[str, MasterRef], dict[str, Receipt], dict[str, str]] | Exception"


def reduce_one(setup: Setup, raw: str | Path | CCDData, out: Path | None = None) -> Reduced:
    """Reduce one raw frame; write it to ``out`` (atomically) when given, and record it in the
    caldb's ledger when there is a caldb and a file."""
    done, receipts, raw_sha, config = make_product(setup, raw, out)
    if done.path is not None:
        done.product_id = record_product(setup, done.meta, done.path, done.sha256, receipts, raw_sha,
                                         config)
    return done


def make_product(setup: Setup, raw: str | Path | CCDData, out: Path | None, chosen: Chosen | None = None
                 ) -> tuple[Reduced, dict[str, Receipt], str, ResolvedConfig]:
    """Read, reduce and write one frame, without touching the ledger: (the product, the caldb
    receipts, the raw's SHA-256, the configuration) for :func:`record_product`. ``chosen``: the
    frame's calibrations as the process driving worker processes chose them, or the error that
    choice raised (raised here after the read, where a serial run meets it); None: chosen here."""
    meta, ccd, raw_name, raw_sha = read_raw(raw, setup)
    config = setup.config(meta.instrument)
    if chosen is None:
        chosen = choose_masters(setup, config, meta)
    elif isinstance(chosen, Exception):
        raise chosen
    masters, receipts, absent = chosen
    ccd = reduce_ccd(ccd, meta, setup.manager, config, masters, receipts=receipts,
                     raw_name=raw_name, raw_checksum=raw_sha, absent=absent,
                     owns_pixels=True)  # read_raw read or copied the pixels for this call
    sha256 = None if out is None else write_ccd(ccd, out)
    return Reduced(ccd, meta, out, sha256, None, used_masters(masters), absent), receipts, raw_sha, config


def frame_entry(meta: FrameMeta, rel: str) -> dict[str, Any]:
    """The start of a frame's ``--json`` entry (the night report's science entries): raw file,
    product name, frame type; the outcome is added to it."""
    return {"raw": meta.path, "product": rel, "frame_type": meta.frame_type}


def used_masters(masters: dict[str, MasterRef]) -> dict[str, dict[str, Any]]:
    """What a product's entry says of each master that made it: path, SHA-256, caldb id."""
    return {k: {"path": str(m.path), "sha256": m.checksum, "caldb_id": m.caldb_id}
            for k, m in masters.items()}


def record_product(setup: Setup, meta: FrameMeta, out: Path, sha256: str | None,
                   receipts: dict[str, Receipt], raw_sha: str, config: ResolvedConfig) -> int | None:
    """The ledger row id of the product written to ``out`` (None: no caldb)."""
    if setup.db is None:
        return None
    return setup.db.record_product(out, meta, receipts, sha256=sha256, raw_sha256=raw_sha,
                                   config_hash=config.recipe_hash(meta.frame_type))

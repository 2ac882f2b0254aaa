"""The calibration database: ingest, selection, quality and provenance over SQLAlchemy."""

from __future__ import annotations

import builtins
import functools
import os
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, bindparam, func, select
from sqlalchemy.orm import Session

from ccdflow import __version__
from ccdflow.caldb import asof, schema
from ccdflow.caldb.bulk import insert_batch
from ccdflow.caldb.connection import Sessions, resolve_url
from ccdflow.caldb.errors import CaldbError
from ccdflow.caldb.ingest import read_master
from ccdflow.caldb.measured_law import with_measured_law
from ccdflow.caldb.models import Calibration
from ccdflow.caldb.products import ProductRecords
from ccdflow.caldb.qa import note_skipped_suspects, review, rule_for_master
from ccdflow.caldb.quality import QualityRecords, who_or_login
from ccdflow.caldb.selection import _FRAME_VALUE as FRAME_VALUE
from ccdflow.caldb.selection import _RECORD_FIELD as RECORD_FIELD
from ccdflow.caldb.selection import CalRecord, NoCalibrationError, Receipt, judge, now_utc, utc
from ccdflow.caldb.selection import select as choose
from ccdflow.framework.engine.errors import CcdflowError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import MatchRule

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

_RECORD_COLUMNS = [getattr(Calibration, f) for f in CalRecord.__dataclass_fields__]


@functools.cache
def _setup_query(keys: tuple[tuple[str, bool], ...], as_of: bool = False) -> Select:
    """Records of one setup in the age window, each with the count of the whole setup: built
    once per set of gate keys (``(key, value is None)``), then only executed with new values.
    ``as_of``: only records ingested by the ``as_of`` parameter (a replay of a past choice)."""
    c = Calibration.__table__.c
    where = [c.type == bindparam("kind", type_=c.type.type),
             c.instrument == bindparam("instrument", type_=c.instrument.type)]
    if as_of:
        where.append(c.ingested_at <= bindparam("as_of", type_=c.ingested_at.type))
    for key, is_null in keys:
        column = c[RECORD_FIELD.get(key, key)]
        where.append(column.is_(None) if is_null else column == bindparam(f"v_{key}", type_=column.type))
    time = c.obs_time
    # The setup's size rides along with every row (computed once): one round trip, not two.
    total = select(func.count()).select_from(Calibration.__table__).where(*where).scalar_subquery()
    return select(*(c[f] for f in CalRecord.__dataclass_fields__), total).where(
        *where, time >= bindparam("t0", type_=time.type), time <= bindparam("t1", type_=time.type))


@dataclass
class AddResult:
    """Outcome of ingesting one file."""

    path: str
    id: int | None
    created: bool
    error: str | None = None
    #: The record's quality (``suspect`` when the master QA found it unlike the previous one).
    quality: str | None = None
    #: The master QA's figures and verdict (caldb/qa.py); None when the file was known already.
    qa: dict[str, Any] | None = None


def record_dict(cal: Calibration) -> dict[str, Any]:
    """A calibration as plain JSON-able data."""
    out = {c.name: getattr(cal, c.name) for c in Calibration.__table__.columns}
    for key, value in out.items():
        if isinstance(value, datetime):
            out[key] = value.isoformat()
    return out


class CalDB(ProductRecords, QualityRecords):
    """One calibration database. ``CalDB(url)`` opens it and checks its schema is current."""

    def __init__(self, url: str | os.PathLike[str] | None = None, *, check: bool = True) -> None:
        self.url = resolve_url(url)
        self.sessions = Sessions(self.url)
        if check:
            schema.check_current(self.sessions.writer, self.url)

    @classmethod
    def create(cls, url: str | os.PathLike[str] | None = None) -> CalDB:
        """Create or upgrade the schema, then open (what `ccdflow caldb init` does)."""
        db = cls(url, check=False)
        schema.upgrade(db.sessions.writer)
        return db

    def close(self) -> None:
        self.sessions.dispose()

    # -- ingest ------------------------------------------------------------------
    def add(self, path: str | Path, manager: PluginManager, *, kind: str | None = None,
            instrument: str | None = None, raw_shape: str | None = None,
            who: str | None = None) -> AddResult:
        """Ingest one master file after its QA against the previous good master of its setup
        (caldb/qa.py); the same content twice returns the existing id."""
        fields = read_master(path, manager, kind, instrument, raw_shape)
        known = self.id_of(fields["sha256"])
        if known is not None:
            return AddResult(fields["path"], known, False)
        qa = review(self, fields, rule_for_master(manager, fields["instrument"], fields["type"]))
        result = self.add_fields(fields, who=who)
        if result.created:
            result.quality, result.qa = fields.get("quality") or "good", qa
        return result

    def id_of(self, sha256: str) -> int | None:
        """The id of the registered master with these bytes, or None (the same content is never
        registered twice)."""
        with self.sessions.read() as session:
            found: int | None = session.scalar(select(Calibration.id).where(
                Calibration.sha256 == sha256).order_by(Calibration.id))
            return found

    def add_many(self, paths: Iterable[str | Path], manager: PluginManager, **options) -> list[AddResult]:
        """Ingest each file in its own transaction; a bad file is reported, others go in."""
        results = []
        for path in paths:
            try:
                results.append(self.add(path, manager, **options))
            except (CcdflowError, OSError, ValueError) as exc:
                results.append(AddResult(str(path), None, False, str(exc)))
        return results

    def add_fields(self, fields: dict[str, Any], *, who: str | None = None) -> AddResult:
        """Insert one record from prepared fields (used by ingest and bulk loaders)."""
        return self.add_records([fields], who=who)[0]

    def add_records(self, records: Iterable[dict[str, Any]], *, who: str | None = None,
                    batch_size: int = 1000) -> list[AddResult]:
        """Insert prepared records, one transaction per batch; a known SHA-256 is not added again."""
        records = list(records)
        who, details = who_or_login(who), {"software_version": __version__}
        results: list[AddResult] = []
        for start in range(0, len(records), batch_size):
            batch = records[start:start + batch_size]
            def insert(session: Session, b: list[dict[str, Any]] = batch) -> list[tuple[int, bool]]:
                return insert_batch(session, b, who, now_utc(), details)

            done = self.sessions.write(insert)
            results += [AddResult(f["path"], cal_id, created)
                        for f, (cal_id, created) in zip(batch, done, strict=True)]
        return results

    # -- queries -----------------------------------------------------------------
    def get(self, cal_id: int) -> dict[str, Any]:
        with self.sessions.read() as session:
            cal = session.get(Calibration, cal_id)
            if cal is None:
                raise CaldbError(f"no calibration with id {cal_id} in {self.display_url}")
            out = record_dict(cal)
            out["inputs"] = [{"name": i.name, "sha256": i.sha256} for i in cal.inputs]
            out["events"] = [{"action": e.action, "reason": e.reason, "who": e.who,
                              "at": e.at.isoformat(), "details": e.details} for e in cal.events]
            return out

    def list(self, *, kind: str | None = None, instrument: str | None = None,
             filter: str | None = None, since: datetime | None = None,
             until: datetime | None = None, include_bad: bool = False) -> list[dict[str, Any]]:
        query = select(Calibration).order_by(Calibration.obs_time, Calibration.id)
        if kind:
            query = query.where(Calibration.type == kind)
        if instrument:
            query = query.where(Calibration.instrument == instrument)
        if filter:
            query = query.where(Calibration.filter == filter)
        if since:
            query = query.where(Calibration.obs_time >= utc(since))
        if until:
            query = query.where(Calibration.obs_time <= utc(until))
        if not include_bad:
            query = query.where(Calibration.quality != "bad")
        with self.sessions.read() as session:
            return [record_dict(c) for c in session.scalars(query)]

    def _records(self, session: Session, kind: str, meta: FrameMeta, rule: MatchRule,
                 when: datetime | None = None) -> tuple[builtins.list[CalRecord], int]:
        """Candidates for ``best``, and how many records of the kind the query left out.

        First the records that pass the rule's equality gates (detector, binning, filter...)
        inside the age window: one range scan of ``ix_calibration_setup``, and these are the
        candidates the receipt lists. Only when none of them passes every gate are all records
        of the type and instrument read, so that "none found" explains a wrong binning or filter.
        """
        t = utc(meta.date_obs)
        window = timedelta(days=rule.max_age_days)
        values = {key: FRAME_VALUE[key](meta) for key in rule.must_match
                  if key in FRAME_VALUE and key != "instrument"}
        query = _setup_query(tuple((k, v is None) for k, v in values.items()), when is not None)
        params = {"kind": kind, "instrument": meta.instrument, "t0": t - window, "t1": t + window,
                  **{f"v_{k}": v for k, v in values.items() if v is not None},
                  **({} if when is None else {"as_of": when})}
        rows = session.connection().execute(query, params).all()
        records = self._as_of(session, [CalRecord(*row[:-1]) for row in rows], when)
        if any(judge(kind, meta, r, rule).accepted for r in records):
            return records, rows[0][-1] - len(rows)
        base = [Calibration.type == kind, Calibration.instrument == meta.instrument]
        if when is not None:
            base.append(Calibration.ingested_at <= when)
        records, excluded = self._in_window(session, base, t, window)
        records = self._as_of(session, records, when)
        if not records and excluded:  # explain with the nearest ones outside the window
            nearest = session.execute(select(*_RECORD_COLUMNS).where(*base).order_by(
                func.abs(func.julianday(Calibration.obs_time) - func.julianday(t))
                if self.url.startswith("sqlite") else
                func.abs(func.extract("epoch", Calibration.obs_time - t))).limit(5)).all()
            records = self._as_of(session, [CalRecord(*row) for row in nearest], when)
            excluded -= len(records)
        return records, excluded

    @staticmethod
    def _as_of(session: Session, records: builtins.list[CalRecord],
               when: datetime | None) -> builtins.list[CalRecord]:
        return records if when is None else asof.as_of(session, records, when)

    @staticmethod
    def _in_window(session: Session, where: builtins.list[ColumnElement[bool]], t: datetime,
                   window: timedelta) -> tuple[builtins.list[CalRecord], int]:
        """Records matching ``where`` within ``window`` of ``t``, and how many match outside it."""
        rows = session.execute(select(*_RECORD_COLUMNS).where(
            *where, Calibration.obs_time >= t - window, Calibration.obs_time <= t + window)).all()
        total = session.scalar(select(func.count()).select_from(Calibration).where(*where))
        return [CalRecord(*row) for row in rows], (total or 0) - len(rows)

    def best(self, kind: str, meta: FrameMeta, rule: MatchRule, *, pin: int | str | None = None,
             waive: bool = False, as_of: datetime | None = None) -> tuple[dict[str, Any], Receipt]:
        """The chosen record (as a dict) and its receipt; raises NoCalibrationError.

        ``as_of``: choose with the database as it was at that time (caldb/asof.py)."""
        when = None if as_of is None else utc(as_of)
        with self.sessions.read() as session:
            pinned = None
            records: builtins.list[CalRecord] = []
            if pin is not None:
                if isinstance(pin, int) or pin.isdigit():
                    match = Calibration.id == int(pin)
                else:
                    match = Calibration.path == str(Path(pin).resolve())
                row = session.execute(select(*_RECORD_COLUMNS).where(match)).first()
                found = [] if row is None else self._as_of(session, [CalRecord(*row)], when)
                if not found:
                    raise CaldbError(f"pinned {kind} {pin!r} is not in {self.display_url}"
                                     + ("" if when is None else f" as of {when.isoformat()}"))
                pinned, excluded = found[0], 0
            else:
                records, excluded = self._records(session, kind, meta, rule, when)
                rule = with_measured_law(kind, meta, records, rule)  # darks: caldb/measured_law.py
            try:
                chosen, receipt = choose(kind, meta, records, rule, pinned=pinned, waive=waive,
                                         excluded=excluded)
            except NoCalibrationError as exc:
                note_skipped_suspects(kind, meta, records, rule, exc.receipt)
                raise
            note_skipped_suspects(kind, meta, records, rule, receipt)
            cal = session.get(Calibration, chosen.id)
            if cal is None:  # chosen from the rows this session just read
                raise CaldbError(f"{kind} {chosen.id} vanished from {self.display_url} while read")
            record = record_dict(cal)
            return (record if when is None else asof.record_as_of(session, record, when)), receipt

    @property
    def display_url(self) -> str:
        from ccdflow.caldb.connection import display_url

        return display_url(self.url)

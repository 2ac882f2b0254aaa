"""Idempotent batch insert of calibration records: one statement per table, safe under concurrency.

The SHA-256 of the file is the identity of a record. Rows are inserted with ``ON CONFLICT
(sha256) DO NOTHING`` so two processes adding the same file at once never raise and never
duplicate: the loser finds the winner's row afterwards (on PostgreSQL its insert waited for the
winner's commit; on SQLite writers are serialised by ``BEGIN IMMEDIATE``). Rows go in sorted
by SHA-256 so concurrent batches take PostgreSQL's unique-index locks in the same order.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import insert as core_insert
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ccdflow.caldb.errors import CaldbError
from ccdflow.caldb.models import Calibration, CalibrationEvent, CalibrationInput
from ccdflow.caldb.selection import utc

_TABLE = Calibration.__table__
_COLUMNS = [c.name for c in _TABLE.columns if c.name not in ("id", "quality", "ingested_at")]
_OPTIONAL = {c.name for c in _TABLE.columns if c.nullable} | {"stats"}
_UPSERT = {"postgresql": pg_insert, "sqlite": sqlite_insert}


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    """Every column, in one shape for the whole batch (executemany needs the same keys)."""
    unknown = set(fields) - set(_COLUMNS) - {"inputs"}
    missing = [k for k in _COLUMNS if k not in _OPTIONAL and fields.get(k) is None]
    if unknown or missing:
        raise CaldbError(f"calibration record for {fields.get('path')!r}: "
                         f"unknown fields {sorted(unknown)}, missing fields {missing}")
    row = {k: fields.get(k) for k in _COLUMNS}
    row["stats"] = row["stats"] or {}
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = utc(value)
    return row


def insert_batch(session: Session, batch: Sequence[dict[str, Any]], who: str, now: datetime,
                 details: dict[str, Any]) -> list[tuple[int, bool]]:
    """(id, created) for each record of ``batch``, in order; known SHA-256s are not inserted again."""
    rows: dict[str, dict[str, Any]] = {}
    inputs: dict[str, list] = {}
    for fields in batch:
        sha = fields.get("sha256")
        if sha not in rows:
            rows[sha] = _row(fields)
            inputs[sha] = list(fields.get("inputs") or [])
    order = sorted(rows)
    ids: dict[str, int] = {}
    for start in range(0, len(order), 500):  # well under SQLite's bound-parameter limit
        chunk = order[start:start + 500]
        ids.update(session.execute(select(Calibration.sha256, Calibration.id)
                                   .where(Calibration.sha256.in_(chunk))).all())
    todo = [sha for sha in order if sha not in ids]
    created: dict[str, int] = {}
    if todo:
        upsert = _UPSERT.get(session.get_bind().dialect.name)
        if upsert is None:  # another backend: no race-proof upsert, the unique index still holds
            stmt = core_insert(_TABLE)
        else:
            stmt = upsert(_TABLE).on_conflict_do_nothing(index_elements=["sha256"])
        result = session.execute(
            stmt.returning(_TABLE.c.sha256, _TABLE.c.id),
            [{**rows[sha], "quality": "good", "ingested_at": now} for sha in todo],
        )
        created = dict(result.all())
        lost = [sha for sha in todo if sha not in created]  # another process inserted them first
        if lost:
            ids.update(session.execute(select(Calibration.sha256, Calibration.id)
                                       .where(Calibration.sha256.in_(lost))).all())
        ids.update(created)
        links = [{"calibration_id": created[sha], "name": str(name), "sha256": digest}
                 for sha in todo if sha in created for name, digest in inputs[sha]]
        if links:
            session.execute(core_insert(CalibrationInput.__table__), links)
        events = [{"calibration_id": created[sha], "action": "ingest", "reason": None, "who": who,
                   "at": now, "details": details} for sha in todo if sha in created]
        if events:  # an empty executemany would insert one row of NULLs
            session.execute(core_insert(CalibrationEvent.__table__), events)
    out, reported = [], set()
    for fields in batch:
        sha = fields["sha256"]
        out.append((ids[sha], sha in created and sha not in reported))
        reported.add(sha)
    return out

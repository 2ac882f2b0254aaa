"""Idempotent batch insert of calibration records: one statement per table, safe under concurrency.

The SHA-256 of the file is the identity of a record. Rows are inserted with ``ON CONFLICT
(sha256) DO NOTHING`` so two processes adding the same file at once never raise and never
duplicate: the loser finds the winner's row afterwards (on PostgreSQL its insert waited for the
winner's commit; on SQLite writers are serialised by ``BEGIN IMMEDIATE``). Rows go in sorted
by SHA-256 so concurrent batches take PostgreSQL's unique-index locks in the same order.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime
from types import SimpleNamespace
from typing import Any

from sqlalchemy import JSON, CursorResult, Table, select
from sqlalchemy import insert as core_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from ccdflow.caldb.errors import CaldbError
from ccdflow.caldb.models import Base, Calibration, CalibrationEvent, CalibrationInput
from ccdflow.caldb.quality import state_of
from ccdflow.caldb.selection import utc


def _table(model: type[Base]) -> Table:
    """A model's table (declarative models type it as any FROM clause)."""
    table = model.__table__
    if not isinstance(table, Table):
        raise TypeError(f"{model.__name__} is not mapped to one table")
    return table


_TABLE = _table(Calibration)
_COLUMNS = [c.name for c in _TABLE.columns if c.name not in ("id", "ingested_at")]
#: A record is good unless its fields say otherwise (the master QA's ``suspect``, see qa.py).
_OPTIONAL = {c.name for c in _TABLE.columns if c.nullable} | {"stats", "quality"}
_CONVERT = {c.name: c.type.python_type for c in _TABLE.columns
            if c.name in _COLUMNS and c.type.python_type in (float, int, str)}


def _row(fields: dict[str, Any]) -> dict[str, Any]:
    """Every column, in one shape for the whole batch (executemany needs the same keys)."""
    unknown = set(fields) - set(_COLUMNS) - {"inputs"}
    missing = [k for k in _COLUMNS if k not in _OPTIONAL and fields.get(k) is None]
    if unknown or missing:
        raise CaldbError(f"calibration record for {fields.get('path')!r}: "
                         f"unknown fields {sorted(unknown)}, missing fields {missing}")
    row = {k: fields.get(k) for k in _COLUMNS}
    row["stats"] = row["stats"] or {}
    row["quality"] = row["quality"] or "good"
    for key, value in row.items():
        if isinstance(value, datetime):
            row[key] = utc(value)
        elif value is not None and key in _CONVERT:
            # Plain Python values: SQLite would store a numpy integer as a blob, and
            # PostgreSQL's driver refuses an array that mixes int and float.
            row[key] = _CONVERT[key](value)
    return row


def _known(session: Session, shas: list[str]) -> dict[str, int]:
    """{sha256: id} of the given SHA-256s already in the database."""
    if not shas:
        return {}
    if session.get_bind().dialect.name == "postgresql":
        # A join with the array, not IN (...): once the driver prepares the statement, PostgreSQL's
        # generic plan for a 500-item IN list scans the whole table, comparing every item per row.
        return dict(session.connection().exec_driver_sql(
            "SELECT c.sha256, c.id FROM unnest(%(shas)s::VARCHAR(64)[]) AS u(sha) "
            "JOIN calibration c ON c.sha256 = u.sha", {"shas": shas}).all())
    found: dict[str, int] = {}
    for start in range(0, len(shas), 500):  # well under SQLite's bound-parameter limit
        found.update(session.execute(select(Calibration.sha256, Calibration.id)
                                     .where(Calibration.sha256.in_(shas[start:start + 500]))).all())
    return found


def _pg_unnest(session: Session, table: Table, rows: list[dict[str, Any]],
               suffix: str = "") -> CursorResult[*tuple[Any, ...]]:
    """PostgreSQL: ``INSERT ... SELECT FROM unnest(one array per column)``, one short statement.

    Several times faster than a multi-row VALUES of 1,000 x 27 parameters, which the driver
    has to parse anew every time. Only names and types from the table definition are written
    into the SQL; every value travels as a bound array parameter.
    """
    dialect = session.get_bind().dialect
    names, arrays, columns = list(rows[0]), {}, []
    for i, name in enumerate(names):
        kind = table.c[name].type
        is_json = isinstance(kind, JSON)
        arrays[f"a{i}"] = [json.dumps(r[name]) if is_json else r[name] for r in rows]
        sql_type = "TEXT" if is_json else kind.compile(dialect=dialect)
        columns.append((f'"{name}"', f"%(a{i})s::{sql_type}[]",
                        f'u."{name}"' + ("::json" if is_json else "")))
    into, arrays_sql, values = (", ".join(parts) for parts in zip(*columns, strict=True))
    sql = (f"INSERT INTO {table.name} ({into}) SELECT {values} "
           f"FROM unnest({arrays_sql}) AS u({into}) {suffix}")
    return session.connection().exec_driver_sql(sql, arrays)


def _insert_calibrations(session: Session, rows: list[dict[str, Any]]) -> dict[str, int]:
    """Insert, skipping SHA-256s already present: {sha256: id} of the rows this call created."""
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        return dict(_pg_unnest(session, _TABLE, rows,
                               "ON CONFLICT (sha256) DO NOTHING RETURNING sha256, id").all())
    stmt = core_insert(_TABLE)
    if dialect == "sqlite":
        stmt = sqlite_insert(_TABLE).on_conflict_do_nothing(index_elements=["sha256"])
    # (another backend: no race-proof upsert, but the unique index still refuses duplicates)
    return dict(session.execute(stmt.returning(_TABLE.c.sha256, _TABLE.c.id), rows).all())


def _insert(session: Session, table: Table, rows: list[dict[str, Any]]) -> None:
    if not rows:  # an empty executemany would insert one row of NULLs
        return
    if session.get_bind().dialect.name == "postgresql":
        _pg_unnest(session, table, rows)
    else:
        session.execute(core_insert(table), rows)


def _ingest_details(row: dict[str, Any], common: dict[str, Any]) -> dict[str, Any]:
    """What the ingest event keeps: the state the record starts in (for as-of replay, see
    asof.py) and the master QA's figures and verdict when it ran."""
    out = {**common, "before": {}, "after": state_of(SimpleNamespace(**row))}
    if row.get("qa") is not None:
        out["qa"] = row["qa"]
    return out


def insert_batch(session: Session, batch: Sequence[dict[str, Any]], who: str, now: datetime,
                 details: dict[str, Any]) -> list[tuple[int, bool]]:
    """(id, created) for each record of ``batch``, in order; known SHA-256s are not inserted again."""
    rows: dict[str, dict[str, Any]] = {}
    inputs: dict[str, list] = {}
    for fields in batch:
        if fields.get("sha256") not in rows:
            row = _row(fields)  # refuses a record without its SHA-256
            sha = row["sha256"]
            rows[sha] = row
            inputs[sha] = list(fields.get("inputs") or [])
    order = sorted(rows)
    ids = _known(session, order)
    todo = [sha for sha in order if sha not in ids]
    created: dict[str, int] = {}
    if todo:
        created = _insert_calibrations(
            session, [{**rows[sha], "ingested_at": now} for sha in todo])
        # Another process inserted these since _known looked: take the ids of its rows.
        ids.update(_known(session, [sha for sha in todo if sha not in created]))
        ids.update(created)
        new = [sha for sha in todo if sha in created]
        _insert(session, _table(CalibrationInput), [
            {"calibration_id": created[sha], "name": str(name), "sha256": digest}
            for sha in new for name, digest in inputs[sha]])
        _insert(session, _table(CalibrationEvent), [
            {"calibration_id": created[sha], "action": "ingest", "reason": rows[sha]["quality_reason"],
             "who": who, "at": now, "details": _ingest_details(rows[sha], details)} for sha in new])
    out, reported = [], set()
    for fields in batch:
        sha = fields["sha256"]
        out.append((ids[sha], sha in created and sha not in reported))
        reported.add(sha)
    return out

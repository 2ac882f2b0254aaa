"""The caldb as it was at a past time: which records existed, and their quality and validity.

A record exists at ``T`` when it was ingested by ``T``. Its quality, quality reason and validity
range at ``T`` are the ``after`` state of its last event at or before ``T`` (every event keeps
the state just before and just after it, see :mod:`ccdflow.caldb.quality`; events older than
schema 0005 had theirs derived by that migration). ``best(..., as_of=T)`` judges those states
with the same gates and cost as today, so it makes the choices a run at ``T`` made, with the
same receipts, whatever was ingested, marked, accepted or certified since.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from ccdflow.caldb.errors import CaldbError
from ccdflow.caldb.models import CalibrationEvent
from ccdflow.caldb.quality import STATE_FIELDS
from ccdflow.caldb.selection import CalRecord

_TIMES = ("valid_from", "valid_to")


def _parsed(state: dict[str, Any]) -> dict[str, Any]:
    out = {name: state.get(name) for name in STATE_FIELDS}
    for name in _TIMES:
        value = out[name]
        if isinstance(value, str):
            out[name] = datetime.fromisoformat(value)
    return out


def states_at(session: Session, ids: Iterable[int], when: datetime) -> dict[int, dict[str, Any]]:
    """{id: state at ``when``} of the given records (those with an event by then)."""
    ids = sorted(set(ids))
    states: dict[int, dict[str, Any]] = {}
    e = CalibrationEvent
    for start in range(0, len(ids), 500):  # well under SQLite's bound-parameter limit
        rows = session.execute(
            select(e.calibration_id, e.action, e.details)
            .where(e.calibration_id.in_(ids[start:start + 500]), e.at <= when)
            .order_by(e.calibration_id, e.at, e.id)).all()
        for cal_id, action, details in rows:  # the last one of each record wins
            after = (details or {}).get("after")
            if after is None:
                raise CaldbError(
                    f"event {action!r} of calibration {cal_id} keeps no state (written by hand, "
                    "or the caldb skipped migration 0005): the caldb cannot be replayed as of "
                    f"{when:%Y-%m-%dT%H:%M:%S}")
            states[cal_id] = _parsed(after)
    return states


def as_of(session: Session, records: list[CalRecord], when: datetime) -> list[CalRecord]:
    """``records`` as they were at ``when``: those ingested by then, with the state they had."""
    known = [r for r in records if r.ingested_at <= when]
    states = states_at(session, (r.id for r in known), when)
    missing = [r.id for r in known if r.id not in states]
    if missing:
        raise CaldbError(f"calibration {missing[0]} was ingested by {when:%Y-%m-%dT%H:%M:%S} but "
                         "has no event by then: the caldb cannot be replayed at that time")
    return [dataclasses.replace(r, **states[r.id]) for r in known]


def record_as_of(session: Session, record: dict[str, Any], when: datetime) -> dict[str, Any]:
    """A record dict (``record_dict``) with its state at ``when``, and ``as_of`` saying so."""
    state = states_at(session, [record["id"]], when).get(record["id"])
    if state is None:
        raise CaldbError(f"calibration {record['id']} did not exist at {when:%Y-%m-%dT%H:%M:%S}")
    shown = {k: v.isoformat() if isinstance(v, datetime) else v for k, v in state.items()}
    return {**record, **shown, "as_of": when.isoformat()}

"""Master QA and as-of replay: a ``qa`` column, and the state around every event.

``calibration.qa`` (JSON, nullable) holds the QA of a master at ingest (ccdflow/caldb/qa.py).
Records that exist when this runs get NULL: nobody compared them, and they are not re-judged
(a master that was chosen yesterday does not become suspect by an upgrade).

Every ``calibration_event`` gets ``details.before`` and ``details.after``: the record's
``quality``, ``quality_reason``, ``valid_from`` and ``valid_to`` just before and just after the
event, which is what ``best(..., as_of=T)`` reads (ccdflow/caldb/asof.py). For events written
before this revision they are derived, per record, oldest event first:

- ``ingest``: before is empty (the record did not exist); after is quality ``good`` (every
  record was ingested good before 0005) with no reason, and the validity range the record had
  then: the old values kept by its first certify/decertify event, else its current range.
- ``mark-bad`` / ``mark-good``: quality ``bad`` / ``good`` with the event's reason.
- ``certify`` / ``decertify``: before is the range the event kept (it stored the old values);
  after is the old range kept by the next certify/decertify of the record, else the current
  range (decertify: none).

The derivation is exact for everything ccdflow's own commands did; a row changed by hand in SQL
without an event cannot be replayed (its state at the time was never recorded).

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-05
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

_VALIDITY = ("certify", "decertify")


def _iso(value: Any) -> str | None:
    """A datetime (PostgreSQL) or SQLite's stored text as ISO 8601, as events store times."""
    if value is None:
        return None
    return value.isoformat() if hasattr(value, "isoformat") else str(value).replace(" ", "T")


def _derive(events: list[dict[str, Any]], current: tuple[str | None, str | None]) -> None:
    """Fill before/after of one record's events (oldest first) in place."""
    validity = [e for e in events if e["action"] in _VALIDITY]
    def kept(event: dict[str, Any]) -> tuple[str | None, str | None]:
        return event["details"].get("valid_from"), event["details"].get("valid_to")

    state: dict[str, Any] = {}
    for event in events:
        details, action = event["details"], event["action"]
        after = dict(state)
        if action == "ingest":
            start = kept(validity[0]) if validity else current
            after = {"quality": "good", "quality_reason": None, "valid_from": start[0],
                     "valid_to": start[1]}
        elif action in ("mark-bad", "mark-good"):
            after.update(quality=action.removeprefix("mark-"), quality_reason=event["reason"])
        elif action in _VALIDITY:
            later = validity[validity.index(event) + 1:]
            after["valid_from"], after["valid_to"] = (
                (None, None) if action == "decertify" else kept(later[0]) if later else current)
        details["before"], details["after"] = state, after
        state = after


def upgrade() -> None:
    op.add_column("calibration", sa.Column("qa", sa.JSON(), nullable=True))
    conn = op.get_bind()
    events = sa.table("calibration_event", sa.column("id", sa.Integer),
                      sa.column("calibration_id", sa.Integer), sa.column("action", sa.String),
                      sa.column("reason", sa.Text), sa.column("at", sa.DateTime),
                      sa.column("details", sa.JSON))
    cals = sa.table("calibration", sa.column("id", sa.Integer), sa.column("valid_from", sa.DateTime),
                    sa.column("valid_to", sa.DateTime))
    current = {row.id: (_iso(row.valid_from), _iso(row.valid_to))
               for row in conn.execute(sa.select(cals))}
    by_record: dict[int, list[dict[str, Any]]] = {}
    for row in conn.execute(sa.select(events).order_by(events.c.calibration_id, events.c.at,
                                                         events.c.id)):
        by_record.setdefault(row.calibration_id, []).append(
            {"id": row.id, "action": row.action, "reason": row.reason,
             "details": dict(row.details or {})})
    for cal_id, derived in by_record.items():
        _derive(derived, current.get(cal_id, (None, None)))
        for event in derived:
            conn.execute(events.update().where(events.c.id == event["id"])
                         .values(details=event["details"]))


def downgrade() -> None:
    # The before/after states stay in the events' details (harmless to older ccdflow versions).
    with op.batch_alter_table("calibration") as batch:
        batch.drop_column("qa")

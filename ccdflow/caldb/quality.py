"""Quality and validity of recorded masters: mark-bad, mark-good (which also accepts a suspect
master), certify, decertify. Every change is an event holding the record's state just before
and just after it (``details.before`` / ``details.after``), which ``best(..., as_of=T)`` replays
(see :mod:`ccdflow.caldb.asof`).

A mixin of :class:`~ccdflow.caldb.database.CalDB`: it uses the database's sessions.
"""

from __future__ import annotations

import getpass
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy.orm import Session

from ccdflow.caldb.errors import CaldbError
from ccdflow.caldb.models import Calibration, CalibrationEvent
from ccdflow.caldb.selection import now_utc, utc

if TYPE_CHECKING:
    from ccdflow.caldb.connection import Sessions

#: The columns an event's before/after states hold: everything selection reads that can change.
STATE_FIELDS = ("quality", "quality_reason", "valid_from", "valid_to")


def who_or_login(who: str | None) -> str:
    if who:
        return who
    try:
        return getpass.getuser()
    except Exception:  # no user database in some containers
        return "unknown"


def state_of(values: Any) -> dict[str, Any]:
    """The state fields of a record (ORM object or row), times as ISO text."""
    out = {}
    for name in STATE_FIELDS:
        value = getattr(values, name)
        out[name] = value.isoformat() if isinstance(value, datetime) else value
    return out


class QualityRecords:
    """mark-bad, mark-good, certify, decertify; ``sessions`` and ``display_url`` come from CalDB."""

    sessions: Sessions

    @property
    def display_url(self) -> str:  # CalDB's
        raise NotImplementedError

    def _event(self, cal_id: int, action: str, reason: str | None, who: str | None,
               change: Callable[[Calibration], None]) -> None:
        def work(session: Session) -> None:
            cal = session.get(Calibration, cal_id)
            if cal is None:
                raise CaldbError(f"no calibration with id {cal_id} in {self.display_url}")
            before = state_of(cal)
            change(cal)
            cal.events.append(CalibrationEvent(
                action=action, reason=reason, who=who_or_login(who), at=now_utc(),
                details={"before": before, "after": state_of(cal)}))

        self.sessions.write(work)

    def mark_bad(self, cal_id: int, reason: str, who: str | None = None) -> None:
        if not reason.strip():
            raise CaldbError("mark-bad needs a reason")

        def change(cal: Calibration) -> None:
            cal.quality, cal.quality_reason = "bad", reason
            cal.quality_by, cal.quality_at = who_or_login(who), now_utc()

        self._event(cal_id, "mark-bad", reason, who, change)

    def mark_good(self, cal_id: int, reason: str | None = None, who: str | None = None) -> None:
        """Good again: undoes mark-bad, and is how a person accepts a master the QA found suspect."""
        def change(cal: Calibration) -> None:
            cal.quality, cal.quality_reason = "good", reason
            cal.quality_by, cal.quality_at = who_or_login(who), now_utc()

        self._event(cal_id, "mark-good", reason, who, change)

    def certify(self, cal_id: int, valid_from: datetime | None, valid_to: datetime | None,
                reason: str | None = None, who: str | None = None) -> None:
        if valid_from and valid_to and utc(valid_to) < utc(valid_from):
            raise CaldbError(f"validity range ends ({valid_to}) before it starts ({valid_from})")

        def change(cal: Calibration) -> None:
            cal.valid_from = None if valid_from is None else utc(valid_from)
            cal.valid_to = None if valid_to is None else utc(valid_to)

        self._event(cal_id, "certify", reason, who, change)

    def decertify(self, cal_id: int, reason: str | None = None, who: str | None = None) -> None:
        def change(cal: Calibration) -> None:
            cal.valid_from = cal.valid_to = None

        self._event(cal_id, "decertify", reason, who, change)

"""``ccdflow.CalDB``: the calibration database from Python, a thin face over
:class:`ccdflow.caldb.database.CalDB` (``.db``) that takes frames as files or ``CCDData`` and
knows the plugins, so no call needs a frame's metadata or a match rule built by hand."""

from __future__ import annotations

import builtins
import io
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ccdflow.caldb import AddResult, Receipt
    from ccdflow.framework.engine.frame import FrameMeta


@dataclass
class Choice:
    """The master the caldb chose for a frame: its record (id, path, sha256, stats...), the
    receipt listing every candidate with the gate it failed or its cost, and the frame as read."""

    kind: str
    record: dict[str, Any]
    receipt: Receipt
    frame: FrameMeta

    @property
    def id(self) -> int:
        return int(self.record["id"])

    @property
    def path(self) -> str:
        return str(self.record["path"])

    def why(self) -> str:
        """Why this master, as `ccdflow caldb best` prints it: the policy, every candidate and the
        verdict."""
        from rich.console import Console

        from ccdflow.cli.caldb_render import print_receipt

        console = Console(record=True, width=120, file=io.StringIO())
        print_receipt(console, self.kind, self.frame, self.record, self.receipt, None)
        return console.export_text()


class CalDB:
    """A calibration database: ``CalDB("caldb.sqlite")`` or a SQLAlchemy URL (PostgreSQL for a
    shared one); ``create=True`` creates or upgrades it (as `ccdflow caldb init`), otherwise it
    must exist. ``instrument_config`` adds instrument YAML files, as ``--instrument-config``."""

    def __init__(self, url: str | Path | None = None, *, create: bool = False,
                 instrument_config: tuple[str | Path, ...] = ()) -> None:
        from ccdflow.caldb import CaldbError
        from ccdflow.caldb.connection import resolve_url
        from ccdflow.caldb.database import CalDB as Database
        from ccdflow.framework.engine.instrument_files import manager_with_files

        resolved = resolve_url(url)
        if not create and resolved.startswith("sqlite:///"):
            path = Path(resolved.removeprefix("sqlite:///"))
            if not path.is_file():
                raise CaldbError(f"no caldb at {path}; create it with CalDB({str(url)!r}, create=True) "
                                 f"or `ccdflow caldb init --caldb {path}`")
        #: the database itself (ccdflow.caldb.database.CalDB): every method the commands use
        self.db = Database.create(resolved) if create else Database(resolved)
        self.manager = manager_with_files(tuple(str(f) for f in instrument_config))

    def __enter__(self) -> CalDB:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"CalDB({self.url!r})"

    @property
    def url(self) -> str:
        """The URL, without a password."""
        return str(self.db.display_url)

    def close(self) -> None:
        self.db.close()

    def frame(self, frame: str | Path | CCDData, instrument: str | None = None) -> FrameMeta:
        """A raw frame's metadata as the caldb matches it (file or CCDData with its header)."""
        from ccdflow.pipeline.single import meta_of

        return meta_of(frame, self.manager, instrument)

    def best(self, frame: str | Path | CCDData, kind: str, *, instrument: str | None = None,
             pin: int | str | None = None, waive: bool = False, as_of: datetime | None = None) -> Choice:
        """The master of type ``kind`` for ``frame``, with the receipt that says why (as `ccdflow
        caldb best`); NoCalibrationError (whose ``receipt`` lists every candidate) when none
        passes the gates. ``pin`` an id or path (it must pass the gates, or ``waive`` them,
        recorded); ``as_of`` chooses with the caldb as it was then."""
        from ccdflow.caldb.rules import rule_for

        meta = self.frame(frame, instrument)
        rule = rule_for(self.manager, meta.instrument, kind)
        record, receipt = self.db.best(kind, meta, rule, pin=pin, waive=waive, as_of=as_of)
        return Choice(kind, record, receipt, meta)

    def add(self, path: str | Path, *, kind: str | None = None, instrument: str | None = None,
            raw_shape: str | None = None) -> AddResult:
        """Ingest one master file after its QA against the previous good master of its setup
        (``result.quality`` is ``suspect`` when it differs beyond the type's limits); the same
        content twice returns the existing id. ``kind``, ``instrument`` and ``raw_shape`` are
        for masters not written by ccdflow (as `ccdflow caldb add`)."""
        return self.db.add(path, self.manager, kind=kind, instrument=instrument, raw_shape=raw_shape)

    def history(self, kind: str, stat: str | None = None, *, since: datetime | None = None,
                until: datetime | None = None, instrument: str | None = None,
                filter: str | None = None, include_bad: bool = False) -> list[dict[str, Any]]:
        """One point per master of ``kind`` holding ``stat`` (default: the type's own, e.g. a
        bias's level), oldest first, as `ccdflow caldb history`."""
        from ccdflow.caldb.history import history

        return history(self.db, kind, stat, since, until, instrument, include_bad=include_bad,
                       filter=filter)

    def list(self, *, kind: str | None = None, instrument: str | None = None, filter: str | None = None,
             since: datetime | None = None, until: datetime | None = None,
             include_bad: bool = False) -> builtins.list[dict[str, Any]]:
        """Records, oldest observation first (as `ccdflow caldb list`)."""
        return self.db.list(kind=kind, instrument=instrument, filter=filter, since=since, until=until,
                            include_bad=include_bad)

    def get(self, cal_id: int) -> dict[str, Any]:
        """One record with its inputs and events (as `ccdflow caldb show`)."""
        return self.db.get(cal_id)

    def mark_bad(self, cal_id: int, reason: str, who: str | None = None) -> None:
        """Never choose this master again (recorded with the reason)."""
        self.db.mark_bad(cal_id, reason, who)

    def mark_good(self, cal_id: int, reason: str | None = None, who: str | None = None) -> None:
        """Accept a suspect or bad master again."""
        self.db.mark_good(cal_id, reason, who)

    def used_by(self, cal_id: int) -> builtins.list[dict[str, Any]]:
        """Products that used this master (the ledger)."""
        return self.db.used_by(cal_id)

    def stale(self) -> builtins.list[dict[str, Any]]:
        """Products whose best calibration today differs from the one they used."""
        from ccdflow.caldb.rules import rule_for

        return self.db.stale(lambda inst, kind: rule_for(self.manager, inst, kind))

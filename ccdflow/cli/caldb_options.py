"""What every `ccdflow caldb` command shares: options, time parsing, opening the database and
reading a frame. Errors become one line and an exit status in ccdflow.cli (one mapping for
every command)."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from ccdflow.cli import ErrorsToExitGroup, fail  # noqa: F401  (fail re-exported)
from ccdflow.cli.options import (  # noqa: F401  (re-exported)
    CALDB_ENV_VAR,
    caldb_options,
    instrument_config_option,
)

if TYPE_CHECKING:
    from ccdflow.caldb import CalDB
    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.plugins import PluginManager

# Everything from ccdflow.caldb (and so SQLAlchemy) is imported inside functions: at module
# level it would add ~0.3 s to every ccdflow command, caldb or not.
ENV_VAR = CALDB_ENV_VAR


#: Errors of every caldb command end as one line and the status of ccdflow.cli.exit_status.
CaldbGroup = ErrorsToExitGroup


class UtcTime(click.ParamType):
    """An ISO date or time, UTC unless it carries an offset. Upper bounds given as a bare
    date mean the end of that day, so ``--until 2026-03-05`` includes the 5th."""

    name = "TIME"

    def __init__(self, end_of_day: bool = False) -> None:
        self.end_of_day = end_of_day

    def convert(self, value: Any, param: Any, ctx: Any) -> datetime:
        if isinstance(value, datetime):
            return value
        text = str(value).strip()
        try:
            parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(f"{value!r} is not an ISO date or time (e.g. 2026-03-01 or 2026-03-01T20:00)",
                      param, ctx)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        if self.end_of_day and re.fullmatch(r"\d{4}-\d{2}-\d{2}", text):
            parsed += timedelta(days=1, microseconds=-1)
        return parsed


def raw_shape(ctx: Any, param: Any, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", value):
        raise click.BadParameter(f"{value!r}: expected NYxNX, e.g. 2048x2148")
    return value


def open_db(caldb_url: str | None, *, write: bool = False) -> CalDB:
    """Open an existing caldb (closed when the command ends); never create an empty file.

    ``write``: the command will record in it (add, mark-bad, --register...), so a read-only
    caldb is refused now, before any work, rather than at the end.
    """
    from sqlalchemy.engine import make_url

    from ccdflow.caldb import CalDB, CaldbError
    from ccdflow.caldb.schema import check_writable

    url = remember(caldb_url)
    ctx = click.get_current_context()
    parsed = make_url(url)
    database = parsed.database or ""
    on_disk = parsed.drivername.startswith("sqlite") and database not in ("", ":memory:")
    if on_disk and not Path(database.removeprefix("file:")).exists():
        raise CaldbError(f"no caldb at {database}; create it with "
                         f"`ccdflow caldb init --caldb {database}`")
    db = CalDB(url)
    ctx.call_on_close(db.close)
    if write:
        check_writable(db.sessions.writer)
    return db


def remember(caldb_url: str | None) -> str:
    """The resolved URL, kept (password hidden) for error messages."""
    from ccdflow.caldb.connection import display_url, resolve_url

    url = resolve_url(caldb_url)
    click.get_current_context().find_root().meta["caldb_url"] = display_url(url)
    return url


def plugin_manager(instrument_files: tuple[str, ...] = ()) -> PluginManager:
    """The plugins, plus the instruments of the ``--instrument-config`` files given."""
    root = click.get_current_context().find_root()
    from ccdflow.framework.engine.instrument_files import manager_with_files

    return manager_with_files(instrument_files, strict=(root.obj or {}).get("strict_plugins") or None)


def read_frame(file: Path, manager: PluginManager, instrument: str | None) -> FrameMeta:
    """FrameMeta of a raw frame: read as ``instrument`` when named, else as the instrument that
    identifies it (instrument files given on the command line included)."""
    from ccdflow.framework.engine.instrument_files import forced_instrument
    from ccdflow.framework.headers.scan import scan_file

    return scan_file(file, manager, forced_instrument(manager, instrument))


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def out_console() -> Console:
    # Tables fit the terminal; plain lines are never broken (they get parsed and grepped).
    return Console(highlight=False, soft_wrap=True)

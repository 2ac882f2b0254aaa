"""What every `ccdflow caldb` command shares: options, time parsing, opening the database,
reading a frame, and turning errors into one line and an exit status."""

from __future__ import annotations

import json
import re
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from ccdflow.cli import EXIT_CONFIG, EXIT_FAILURES, EXIT_INPUT, err_console
from ccdflow.cli.options import CALDB_ENV_VAR, caldb_options  # noqa: F401  (re-exported)
from ccdflow.framework.errors import CcdflowError, ConfigError, PluginError, UnprocessableInputError

if TYPE_CHECKING:
    from ccdflow.caldb import CalDB
    from ccdflow.framework.frame import FrameMeta
    from ccdflow.framework.instrument import Instrument

# Everything from ccdflow.caldb (and so SQLAlchemy) is imported inside functions: at module
# level it would add ~0.3 s to every ccdflow command, caldb or not.
ENV_VAR = CALDB_ENV_VAR


class CaldbGroup(click.Group):
    """Turns errors from any caldb command into one clear line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except CcdflowError as exc:
            from ccdflow.caldb import NoCalibrationError  # imported already if it was raised

            if isinstance(exc, NoCalibrationError):
                fail(EXIT_FAILURES, "no calibration", exc)
            if isinstance(exc, ConfigError | PluginError):
                fail(EXIT_CONFIG, "configuration error", exc)
            fail(EXIT_INPUT, "error", exc)
        except Exception as exc:
            # Only a loaded SQLAlchemy can have raised its errors; importing it for `--help`
            # would cost every caldb command ~1 s.
            sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
            if sqlalchemy_exc is None or not isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
                raise
            url = ctx.meta.get("caldb_url") or "the caldb"
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            fail(EXIT_INPUT, "database error", f"{url}: {text}{_hint(text)}")


def _hint(text: str) -> str:
    if re.search(r'database ".*" does not exist', text):
        return "; create the database on the server first (e.g. `createdb caldb`)"
    if re.search(r"no such table|relation .* does not exist", text):
        return "; run `ccdflow caldb init` on it"
    return ""


def fail(status: int, label: str, message: object) -> None:
    err_console.print(f"[red]{label}:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)
    sys.exit(status)


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


def open_db(caldb_url: str | None) -> CalDB:
    """Open an existing caldb (closed when the command ends); never create an empty file."""
    from sqlalchemy.engine import make_url

    from ccdflow.caldb import CalDB, CaldbError

    url = remember(caldb_url)
    ctx = click.get_current_context()
    parsed = make_url(url)
    on_disk = parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:")
    if on_disk and not Path(parsed.database).is_file():
        raise CaldbError(f"no caldb at {parsed.database}; create it with "
                             f"`ccdflow caldb init --caldb {parsed.database}`")
    db = CalDB(url)
    ctx.call_on_close(db.close)
    return db


def remember(caldb_url: str | None) -> str:
    """The resolved URL, kept (password hidden) for error messages."""
    from ccdflow.caldb.connection import display_url, resolve_url

    url = resolve_url(caldb_url)
    click.get_current_context().find_root().meta["caldb_url"] = display_url(url)
    return url


def plugin_manager() -> Any:
    root = click.get_current_context().find_root()
    from ccdflow.framework.plugins import get_plugin_manager

    return get_plugin_manager(strict=(root.obj or {}).get("strict_plugins") or None)


instrument_config_option = click.option(
    "--instrument-config", "instrument_file", type=click.Path(exists=True, dir_okay=False),
    help="Instrument YAML (complete, or `extends: NAME` with your own `caldb:` match rules); "
         "used instead of the registered instrument of the same name.")


def instruments_with(manager: Any, instrument_file: str | None) -> tuple[dict[str, Instrument],
                                                                    Instrument | None]:
    """Registered instruments with a site's instrument file over its namesake, and that one."""
    known = dict(manager.instruments)
    if instrument_file is None:
        return known, None
    from ccdflow.framework.config import load_instrument_file

    site, _, _ = load_instrument_file(instrument_file, manager.instruments)
    known[site.name] = site
    return known, site


def read_frame(file: Path, manager: Any, instrument: str | None, site: Instrument | None) -> FrameMeta:
    """FrameMeta of a raw frame, read through the site instrument's header map when one is given."""
    from ccdflow.framework.fitsio import read_headers
    from ccdflow.framework.header_map import normalise
    from ccdflow.framework.scan import scan_file

    if site is None:
        return scan_file(file, manager, instrument)
    if instrument not in (None, site.name):
        raise click.UsageError(f"--instrument {instrument} contradicts --instrument-config, "
                               f"which defines instrument {site.name}")
    try:
        return normalise(site, read_headers(file, complete=True), str(file))
    except (ValueError, TypeError, KeyError) as exc:  # malformed cards, as in framework.scan
        raise UnprocessableInputError(f"header cannot be read as {site.name!r}: {exc}",
                                      path=str(file)) from None


def echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def out_console() -> Console:
    # Tables fit the terminal; plain lines are never broken (they get parsed and grepped).
    return Console(highlight=False, soft_wrap=True)

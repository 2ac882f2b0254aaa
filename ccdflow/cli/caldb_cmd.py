"""`ccdflow caldb`: ingest masters, choose and explain calibrations, track quality and drift."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console
from rich.markup import escape

from ccdflow.cli import EXIT_CONFIG, EXIT_FAILURES, EXIT_INPUT, err_console
from ccdflow.framework.config import load_instrument_file
from ccdflow.framework.errors import CcdflowError, ConfigError, PluginError, UnprocessableInputError
from ccdflow.framework.fitsio import read_headers
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.header_map import normalise
from ccdflow.framework.plugins import get_plugin_manager
from ccdflow.framework.scan import iter_fits_files, scan_file

if TYPE_CHECKING:
    from ccdflow.caldb import CalDB
    from ccdflow.framework.instrument import Instrument

# Everything from ccdflow.caldb (and so SQLAlchemy) is imported inside the commands: at module
# level it would add ~0.3 s to every ccdflow command, caldb or not.
ENV_VAR = "CCDFLOW_CALDB"  # ccdflow.caldb.connection.ENV_VAR


class _CaldbGroup(click.Group):
    """Turns errors from any caldb command into one clear line and an exit status."""

    def invoke(self, ctx: click.Context) -> Any:
        from sqlalchemy.exc import SQLAlchemyError

        from ccdflow.caldb import NoCalibrationError

        try:
            return super().invoke(ctx)
        except NoCalibrationError as exc:
            _fail(EXIT_FAILURES, "no calibration", exc)
        except (ConfigError, PluginError) as exc:
            _fail(EXIT_CONFIG, "configuration error", exc)
        except CcdflowError as exc:
            _fail(EXIT_INPUT, "error", exc)
        except SQLAlchemyError as exc:
            url = ctx.meta.get("caldb_url") or "the caldb"
            text = str(getattr(exc, "orig", None) or exc).strip().splitlines()[0]
            _fail(EXIT_INPUT, "database error", f"{url}: {text}{_hint(text)}")


def _hint(text: str) -> str:
    if re.search(r'database ".*" does not exist', text):
        return "; create the database on the server first (e.g. `createdb caldb`)"
    if re.search(r"no such table|relation .* does not exist", text):
        return "; run `ccdflow caldb init` on it"
    return ""


def _fail(status: int, label: str, message: object) -> None:
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


def _raw_shape(ctx: Any, param: Any, value: str | None) -> str | None:
    if value is not None and not re.fullmatch(r"[1-9]\d*x[1-9]\d*", value):
        raise click.BadParameter(f"{value!r}: expected NYxNX, e.g. 2048x2148")
    return value


def caldb_options(json_output: bool = True) -> Callable:
    """``--caldb`` (every command) and ``--json`` (query commands)."""

    def decorate(func: Callable) -> Callable:
        if json_output:
            func = click.option("--json", "as_json", is_flag=True,
                                help="Print machine-readable JSON.")(func)
        return click.option(
            "--caldb", "caldb_url", metavar="URL|PATH", envvar=ENV_VAR, show_envvar=True,
            help="SQLite file or SQLAlchemy URL (e.g. postgresql+psycopg://user@host/caldb). "
                 "Default: $XDG_DATA_HOME/ccdflow/caldb.sqlite "
                 "(~/.local/share/ccdflow/caldb.sqlite).")(func)

    return decorate


def open_db(caldb_url: str | None) -> CalDB:
    """Open an existing caldb (closed when the command ends); never create an empty file."""
    from sqlalchemy.engine import make_url

    from ccdflow.caldb import CalDB, CaldbError

    url = _remember(caldb_url)
    ctx = click.get_current_context()
    parsed = make_url(url)
    on_disk = parsed.drivername.startswith("sqlite") and parsed.database not in (None, "", ":memory:")
    if on_disk and not Path(parsed.database).is_file():
        raise CaldbError(f"no caldb at {parsed.database}; create it with "
                             f"`ccdflow caldb init --caldb {parsed.database}`")
    db = CalDB(url)
    ctx.call_on_close(db.close)
    return db


def _remember(caldb_url: str | None) -> str:
    """The resolved URL, kept (password hidden) for error messages."""
    from ccdflow.caldb.connection import display_url, resolve_url

    url = resolve_url(caldb_url)
    click.get_current_context().find_root().meta["caldb_url"] = display_url(url)
    return url


def _manager() -> Any:
    root = click.get_current_context().find_root()
    return get_plugin_manager(strict=(root.obj or {}).get("strict_plugins") or None)


instrument_config_option = click.option(
    "--instrument-config", "instrument_file", type=click.Path(exists=True, dir_okay=False),
    help="Instrument YAML (complete, or `extends: NAME` with your own `caldb:` match rules); "
         "used instead of the registered instrument of the same name.")


def _instruments(manager: Any, instrument_file: str | None) -> tuple[dict[str, Instrument],
                                                                    Instrument | None]:
    """Registered instruments with a site's instrument file over its namesake, and that one."""
    known = dict(manager.instruments)
    if instrument_file is None:
        return known, None
    site, _, _ = load_instrument_file(instrument_file, manager.instruments)
    known[site.name] = site
    return known, site


def read_frame(file: Path, manager: Any, instrument: str | None, site: Instrument | None) -> FrameMeta:
    """FrameMeta of a raw frame, read through the site instrument's header map when one is given."""
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


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2, default=str))


def _out() -> Console:
    # Tables fit the terminal; plain lines are never broken (they get parsed and grepped).
    return Console(highlight=False, soft_wrap=True)


@click.group("caldb", cls=_CaldbGroup)
def command() -> None:
    """The calibration database: which master fits which frame, and why.

    \b
    Quick start:
      ccdflow caldb init --caldb caldb.sqlite
      ccdflow caldb add masters/*.fits --caldb caldb.sqlite
      ccdflow caldb best --type dark raw/sci_001.fits --caldb caldb.sqlite

    Set CCDFLOW_CALDB once instead of repeating --caldb. See docs/caldb.md.
    """


@command.command("init")
@caldb_options(json_output=False)
def init(caldb_url: str | None) -> None:
    """Create the caldb, or upgrade its schema to this version of ccdflow.

    \b
    Examples:
      ccdflow caldb init --caldb /data/caldb.sqlite
      ccdflow caldb init --caldb postgresql+psycopg://pipeline@dbhost/caldb
    """
    from ccdflow.caldb import CalDB, schema

    db = CalDB.create(_remember(caldb_url))
    click.get_current_context().call_on_close(db.close)
    revision = schema.current_revision(db.sessions.writer)
    click.echo(f"caldb ready: {db.display_url} (schema revision {revision})")


@command.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--type", "kind", metavar="T",
              help="Calibration type of masters not written by ccdflow (bias, dark, flat, bpm...).")
@click.option("--instrument", help="Instrument whose header map reads such masters.")
@click.option("--raw-shape", callback=_raw_shape, metavar="NYxNX",
              help="Shape of the raw frames a foreign master was made from (default: its own).")
@caldb_options()
def add(files: tuple[Path, ...], kind: str | None, instrument: str | None, raw_shape: str | None,
        caldb_url: str | None, as_json: bool) -> None:
    """Ingest master calibration files (directories are searched for FITS files).

    Masters written by ccdflow carry all their metadata. Others (e.g. from ccdproc) need
    --type, and are read through the instrument's header map. The same content twice is
    not duplicated. A file that cannot be ingested is reported with the reason and the
    others still go in; the exit status is then 1.

    \b
    Examples:
      ccdflow caldb add masters/
      ccdflow caldb add old/master_bias.fits --type bias --instrument generic --raw-shape 2048x2148
    """
    manager = _manager()
    if instrument:
        manager.instrument(instrument)  # an unknown name fails before anything is ingested
    db = open_db(caldb_url)
    results = db.add_many(iter_fits_files(files), manager, kind=kind, instrument=instrument,
                          raw_shape=raw_shape)
    added = [r for r in results if r.created]
    present = [r for r in results if r.id is not None and not r.created]
    failed = [r for r in results if r.error is not None]
    if as_json:
        _echo_json({"results": [vars(r) for r in results], "added": len(added),
                    "already_present": len(present), "failed": len(failed)})
    else:
        for r in results:
            if r.created:
                click.echo(f"added {r.path}: id {r.id}")
            elif r.id is not None:
                click.echo(f"{r.path}: already present, id {r.id}")
        for r in failed:
            err_console.print(f"[red]failed:[/red] {escape(r.error or '')}", highlight=False,
                              soft_wrap=True)
        click.echo(f"{len(added)} added, {len(present)} already present, {len(failed)} failed")
    if failed:
        sys.exit(EXIT_FAILURES)


@command.command("list")
@click.option("--type", "kind", metavar="T", help="Only this calibration type.")
@click.option("--instrument", help="Only this instrument.")
@click.option("--filter", "filter_", metavar="NAME", help="Only this filter.")
@click.option("--since", type=UtcTime(), help="Observed at or after this UTC date/time.")
@click.option("--until", type=UtcTime(end_of_day=True), help="Observed up to this UTC date/time.")
@click.option("--include-bad", is_flag=True, help="Also list masters marked bad.")
@caldb_options()
def list_(kind, instrument, filter_, since, until, include_bad, caldb_url, as_json) -> None:
    """List calibrations, oldest observation first.

    \b
    Example:
      ccdflow caldb list --type flat --filter V --since 2026-03-01 --until 2026-03-31
    """
    from ccdflow.cli.caldb_render import records_table

    records = open_db(caldb_url).list(kind=kind, instrument=instrument, filter=filter_, since=since,
                                      until=until, include_bad=include_bad)
    if as_json:
        _echo_json(records)
        return
    if records:
        _out().print(records_table(records))
    click.echo(f"{len(records)} calibration{'s' * (len(records) != 1)}")


@command.command("show")
@click.argument("cal_id", metavar="ID", type=int)
@caldb_options()
def show(cal_id: int, caldb_url: str | None, as_json: bool) -> None:
    """Everything about one calibration: metadata, statistics, inputs and its event history.

    \b
    Example:
      ccdflow caldb show 42
    """
    from ccdflow.cli.caldb_render import print_record

    record = open_db(caldb_url).get(cal_id)
    if as_json:
        _echo_json(record)
        return
    print_record(_out(), record)


@command.command("best")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--type", "kind", required=True, metavar="T", help="Calibration type wanted.")
@click.option("--instrument", help="Read FILE as this instrument (default: identified from its header).")
@click.option("--pin", metavar="ID|PATH", help="Use this calibration (it must still pass the gates).")
@click.option("--waive", is_flag=True, help="With --pin: use it even if it fails gates (recorded).")
@instrument_config_option
@caldb_options()
def best(file: Path, kind: str, instrument: str | None, pin: str | None, waive: bool,
         instrument_file: str | None, caldb_url: str | None, as_json: bool) -> None:
    """The calibration of type T for raw frame FILE, with every candidate and why.

    Exit status 1 when no calibration passes the gates.

    \b
    Examples:
      ccdflow caldb best --type dark raw/sci_001.fits
      ccdflow caldb best --type flat raw/sci_001.fits --pin 17 --waive --json
      ccdflow caldb best --type dark raw/sci_001.fits --instrument-config site-rules.yaml
    """
    from ccdflow.caldb import NoCalibrationError
    from ccdflow.caldb.rules import rule_for
    from ccdflow.cli.caldb_render import best_json, print_receipt

    if waive and pin is None:
        raise click.UsageError("--waive only applies to a calibration chosen with --pin")
    manager = _manager()
    instruments, site = _instruments(manager, instrument_file)
    meta = read_frame(file.resolve(), manager, instrument, site)
    rule = rule_for(instruments, meta.instrument, kind)
    db = open_db(caldb_url)
    record, receipt, error = None, None, None
    try:
        record, receipt = db.best(kind, meta, rule, pin=pin, waive=waive)
    except NoCalibrationError as exc:
        receipt, error = exc.receipt, str(exc)
    if as_json:
        _echo_json(best_json(record, receipt, meta, error))
    else:
        print_receipt(_out(), kind, meta, record, receipt, error)
    if error is not None:
        sys.exit(EXIT_FAILURES)


@command.command("history")
@click.option("--type", "kind", required=True, metavar="T", help="Calibration type.")
@click.option("--stat", metavar="NAME",
              help="median (bias level), noise (read-noise proxy), dark_rate, flat_median, or any "
                   "key in the masters' stats (default: the type's main statistic).")
@click.option("--since", type=UtcTime(), help="Observed at or after this UTC date/time.")
@click.option("--until", type=UtcTime(end_of_day=True), help="Observed up to this UTC date/time.")
@click.option("--instrument", help="Only this instrument.")
@click.option("--filter", "filter_", metavar="NAME", help="Only this filter (flats).")
@click.option("--include-bad", is_flag=True, help="Include masters marked bad (plotted as red crosses).")
@click.option("--plot", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE.png",
              help="Also write the series as a PNG plot.")
@caldb_options()
def history_(kind, stat, since, until, instrument, filter_, include_bad, plot, caldb_url,
             as_json) -> None:
    """How a master statistic drifted over time, as a table, JSON or a PNG plot.

    \b
    Examples:
      ccdflow caldb history --type bias --stat median --since 2026-03-01
      ccdflow caldb history --type dark --stat dark_rate --plot dark_rate.png
    """
    from ccdflow.caldb.history import history, plot_history, stat_name
    from ccdflow.cli.caldb_render import table

    series = history(open_db(caldb_url), kind, stat, since, until, instrument,
                     include_bad=include_bad, filter=filter_)
    key = stat_name(kind, stat)
    if plot is not None:
        title = f"{kind} masters: {key}" + "".join(f", {v}" for v in (instrument, filter_) if v)
        plot_history(series, plot, title)
    if as_json:
        _echo_json({"type": kind, "stat": key, "series": series,
                    "plot": None if plot is None else str(plot)})
        return
    out = _out()
    tab = table("id", "observed (UTC)", key, "filter", "exp (s)", "temp (C)", "quality", "file")
    for p in series:
        temp = "-" if p["temperature"] is None else f"{p['temperature']:.1f}"
        tab.add_row(str(p["id"]), p["obs_time"][:16].replace("T", " "), f"{p['value']:.6g}",
                    escape(p["filter"] or "-"), f"{p['exposure_time'] or 0:g}", temp,
                    "[red]bad[/red]" if p["quality"] == "bad" else p["quality"],
                    escape(Path(p["path"]).name))
    if series:
        out.print(tab)
    click.echo(f"{len(series)} {kind} master{'s' * (len(series) != 1)} with {key}")
    if plot is not None:
        click.echo(f"plot written to {plot}")


def _quality_command(name: str, help_text: str) -> Callable:
    """Shared shape of the commands that change one record: ID, --reason, --who, --caldb."""

    def decorate(func: Callable) -> Callable:
        func.__doc__ = help_text
        func = caldb_options(json_output=False)(func)
        func = click.option("--who", metavar="NAME", help="Recorded as the actor (default: login).")(func)
        func = click.argument("cal_id", metavar="ID", type=int)(func)
        cmd = command.command(name)(func)
        cmd.params.sort(key=lambda p: p.name in ("who", "caldb_url"))  # the command's own first
        return cmd

    return decorate


@_quality_command("mark-bad", """Mark a calibration bad: it is never selected again.

    \b
    Example:
      ccdflow caldb mark-bad 42 --reason "light leak, see log 2026-03-04"
    """)
@click.option("--reason", required=True, help="Why (kept in the record's history).")
def mark_bad(cal_id: int, reason: str, who: str | None, caldb_url: str | None) -> None:
    db = open_db(caldb_url)
    db.mark_bad(cal_id, reason, who=who)
    used = len(db.used_by(cal_id))
    click.echo(f"calibration {cal_id} marked bad: {reason}")
    if used:
        click.echo(f"{used} product{'s' * (used != 1)} used it; `ccdflow caldb stale` lists what to "
                   "re-reduce")


@_quality_command("mark-good", """Mark a calibration good again, undoing mark-bad.

    \b
    Example:
      ccdflow caldb mark-good 42 --reason "leak was in another night"
    """)
@click.option("--reason", help="Why (kept in the record's history).")
def mark_good(cal_id: int, reason: str | None, who: str | None, caldb_url: str | None) -> None:
    open_db(caldb_url).mark_good(cal_id, reason, who=who)
    click.echo(f"calibration {cal_id} marked good" + (f": {reason}" if reason else ""))


@_quality_command("certify", """Restrict a calibration to frames observed in a validity range.

    Times are UTC; a bare --to date includes that whole day.

    \b
    Example:
      ccdflow caldb certify 42 --from 2026-03-01 --to 2026-03-31 --reason "after CCD swap"
    """)
@click.option("--from", "valid_from", type=UtcTime(), required=True, help="First valid UTC date/time.")
@click.option("--to", "valid_to", type=UtcTime(end_of_day=True), help="Last valid (default: open).")
@click.option("--reason", help="Why (kept in the record's history).")
def certify(cal_id, valid_from, valid_to, reason, who, caldb_url) -> None:
    open_db(caldb_url).certify(cal_id, valid_from, valid_to, reason, who=who)
    end = valid_to.isoformat() if valid_to else "open-ended"
    click.echo(f"calibration {cal_id} valid from {valid_from.isoformat()} to {end}")


@_quality_command("decertify", """Remove a calibration's validity range (valid at any time again).

    \b
    Example:
      ccdflow caldb decertify 42 --reason "range was too narrow"
    """)
@click.option("--reason", help="Why (kept in the record's history).")
def decertify(cal_id: int, reason: str | None, who: str | None, caldb_url: str | None) -> None:
    open_db(caldb_url).decertify(cal_id, reason, who=who)
    click.echo(f"calibration {cal_id} has no validity range now")


@command.command("used-by")
@click.argument("cal_id", metavar="ID", type=int)
@caldb_options()
def used_by(cal_id: int, caldb_url: str | None, as_json: bool) -> None:
    """Products (reduced frames) that used a calibration.

    \b
    Example:
      ccdflow caldb used-by 42 --json
    """
    from ccdflow.cli.caldb_render import table

    db = open_db(caldb_url)
    db.get(cal_id)  # an unknown id is an error, not an empty list
    products = db.used_by(cal_id)
    if as_json:
        _echo_json(products)
        return
    tab = table("product", "raw frame", "as", "observed (UTC)", "cost", "path")
    for p in products:
        cost = (p["receipt"] or {}).get("cost")
        tab.add_row(str(p["product_id"]), escape(p["raw_name"]), p["type"],
                    p["obs_time"][:16].replace("T", " "), "-" if cost is None else f"{cost:.4g}",
                    escape(p["path"]))
    if products:
        _out().print(tab)
    click.echo(f"{len(products)} product{'s' * (len(products) != 1)} used calibration {cal_id}")


@command.command("stale")
@instrument_config_option
@caldb_options()
def stale(instrument_file: str | None, caldb_url: str | None, as_json: bool) -> None:
    """Products whose best calibration today is not the one they used: re-reduce these.

    A product goes stale when a better master arrives or the one it used is marked bad.

    \b
    Example:
      ccdflow caldb stale --json | jq -r '.[].path' | sort -u
    """
    from ccdflow.caldb.rules import rule_for
    from ccdflow.cli.caldb_render import table

    instruments, _ = _instruments(_manager(), instrument_file)
    rows = open_db(caldb_url).stale(lambda inst, kind: rule_for(instruments, inst, kind))
    if as_json:
        _echo_json(rows)
        return
    tab = table("product", "type", "used", "best now", "reason", "path")
    for r in rows:
        tab.add_row(str(r["product_id"]), r["type"], str(r["used"]),
                    "none" if r["best_now"] is None else str(r["best_now"]),
                    escape(r["reason"]), escape(r["path"]))
    if rows:
        _out().print(tab)
    n = len({r["product_id"] for r in rows})
    click.echo(f"{n} stale product{'s' * (n != 1)}")


@command.command("verify")
@caldb_options()
def verify_(caldb_url: str | None, as_json: bool) -> None:
    """Check every recorded file exists and still has its SHA-256; changes nothing.

    Exit status 1 when a file is missing, changed or unreadable.

    \b
    Example:
      ccdflow caldb verify
    """
    from ccdflow.caldb.verify import PROBLEMS, verify
    from ccdflow.cli.caldb_render import table

    rows = verify(open_db(caldb_url))
    bad = [r for r in rows if r["status"] in PROBLEMS]
    counts = {s: sum(r["status"] == s for r in rows) for s in ("ok", *PROBLEMS)}
    if as_json:
        _echo_json({"checked": len(rows), "counts": counts, "problems": bad})
    else:
        if bad:
            tab = table("record", "id", "type", "status", "detail", "path")
            for r in bad:
                tab.add_row(r["record"], str(r["id"]), r["type"], f"[red]{r['status']}[/red]",
                            escape(r["detail"] or ""), escape(r["path"]))
            _out().print(tab)
        click.echo(f"{len(rows)} files checked: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if bad:
        sys.exit(EXIT_FAILURES)

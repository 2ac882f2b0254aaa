"""`ccdflow caldb`: create the database, ingest masters, list and show them, and choose (and
explain) the calibration for a frame. The commands that follow masters over time are in
``caldb_track_cmd``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.markup import escape

from ccdflow.cli import EXIT_FAILURES, caldb_track_cmd, err_console
from ccdflow.cli.caldb_options import (
    CaldbGroup,
    UtcTime,
    caldb_options,
    echo_json,
    instrument_config_option,
    open_db,
    out_console,
    plugin_manager,
    raw_shape,
    read_frame,
    remember,
)


@click.group("caldb", cls=CaldbGroup)
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

    db = CalDB.create(remember(caldb_url))
    click.get_current_context().call_on_close(db.close)
    revision = schema.current_revision(db.sessions.writer)
    click.echo(f"caldb ready: {db.display_url} (schema revision {revision})")


@command.command("add")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--type", "kind", metavar="T",
              help="Calibration type of masters not written by ccdflow (bias, dark, flat, bpm...).")
@click.option("--instrument", help="Instrument whose header map reads such masters.")
@click.option("--raw-shape", callback=raw_shape, metavar="NYxNX",
              help="Shape of the raw frames a foreign master was made from (default: its own).")
@instrument_config_option
@caldb_options()
def add(files: tuple[Path, ...], kind: str | None, instrument: str | None, raw_shape: str | None,
        instrument_files: tuple[str, ...], caldb_url: str | None, as_json: bool) -> None:
    """Ingest master calibration files (directories are searched for FITS files).

    Masters written by ccdflow carry all their metadata. Others (e.g. from ccdproc) need
    --type, and are read through the instrument's header map. The same content twice is
    not duplicated. Each new master is compared with the previous good master of its setup
    (master QA): one that differs beyond the type's limits is recorded as suspect and never
    chosen until `ccdflow caldb mark-good ID` accepts it. A file that cannot be ingested is
    reported with the reason and the others still go in; the exit status is then 1.

    \b
    Examples:
      ccdflow caldb add masters/
      ccdflow caldb add old/master_bias.fits --type bias --instrument generic --raw-shape 2048x2148
    """
    manager = plugin_manager(instrument_files)
    if instrument:
        manager.instrument(instrument)  # an unknown name fails before anything is ingested
    db = open_db(caldb_url, write=True)
    from ccdflow.framework.headers.scan import iter_fits_files  # astropy: only when ingesting

    results = db.add_many(iter_fits_files(files), manager, kind=kind, instrument=instrument,
                          raw_shape=raw_shape)
    added = [r for r in results if r.created]
    present = [r for r in results if r.id is not None and not r.created]
    failed = [r for r in results if r.error is not None]
    if as_json:
        echo_json({"results": [vars(r) for r in results], "added": len(added),
                    "already_present": len(present), "failed": len(failed)})
    else:
        from ccdflow.caldb.qa import qa_words

        for r in results:
            if r.created:
                click.echo(f"added {r.path}: id {r.id}" + (f" ({qa_words(r.qa)})" if r.qa else ""))
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
        echo_json(records)
        return
    if records:
        out_console().print(records_table(records))
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
        echo_json(record)
        return
    print_record(out_console(), record)


@command.command("best")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--type", "kind", required=True, metavar="T", help="Calibration type wanted.")
@click.option("--instrument", help="Read FILE as this instrument (default: identified from its header).")
@click.option("--pin", metavar="ID|PATH", help="Use this calibration (it must still pass the gates).")
@click.option("--waive", is_flag=True, help="With --pin: use it even if it fails gates (recorded).")
@click.option("--as-of", "as_of", type=UtcTime(), metavar="TIME",
              help="Choose with the caldb as it was at this UTC time: only masters ingested by "
                   "then, with the quality and validity they had (replays a past run's choice).")
@instrument_config_option
@caldb_options()
def best(file: Path, kind: str, instrument: str | None, pin: str | None, waive: bool,
         as_of, instrument_files: tuple[str, ...], caldb_url: str | None, as_json: bool) -> None:
    """The calibration of type T for raw frame FILE, with every candidate and why.

    Exit status 1 when no calibration passes the gates.

    \b
    Examples:
      ccdflow caldb best --type dark raw/sci_001.fits
      ccdflow caldb best --type flat raw/sci_001.fits --pin 17 --waive --json
      ccdflow caldb best --type dark raw/sci_001.fits --instrument-config site-rules.yaml
      ccdflow caldb best --type flat raw/sci_001.fits --as-of 2026-03-02T08:00
    """
    from ccdflow.caldb import NoCalibrationError
    from ccdflow.caldb.rules import rule_for
    from ccdflow.cli.caldb_render import best_json, print_receipt

    if waive and pin is None:
        raise click.UsageError("--waive only applies to a calibration chosen with --pin")
    manager = plugin_manager(instrument_files)
    meta = read_frame(file.resolve(), manager, instrument)
    rule = rule_for(manager.instruments, meta.instrument, kind)
    db = open_db(caldb_url)
    record, receipt, error = None, None, None
    try:
        record, receipt = db.best(kind, meta, rule, pin=pin, waive=waive, as_of=as_of)
    except NoCalibrationError as exc:
        receipt, error = exc.receipt, str(exc)
    if as_json:
        echo_json({**best_json(record, receipt, meta, error),
                   "as_of": None if as_of is None else as_of.isoformat()})
    else:
        if as_of is not None:
            out_console().print(f"caldb as of {as_of.isoformat()} UTC")
        print_receipt(out_console(), kind, meta, record, receipt, error)
    if error is not None:
        sys.exit(EXIT_FAILURES)



for _cmd in (caldb_track_cmd.history_, caldb_track_cmd.mark_bad, caldb_track_cmd.mark_good,
             caldb_track_cmd.certify, caldb_track_cmd.decertify, caldb_track_cmd.used_by,
             caldb_track_cmd.stale, caldb_track_cmd.verify_):
    command.add_command(_cmd)

"""`ccdflow caldb` commands that follow masters over time: history, quality, validity, products
that used them, and whether their files are intact."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import click
from rich.markup import escape

from ccdflow.cli import EXIT_FAILURES
from ccdflow.cli.caldb_options import (
    UtcTime,
    caldb_options,
    echo_json,
    instrument_config_option,
    open_db,
    out_console,
    plugin_manager,
)


@click.command("history")
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
    from ccdflow.caldb.qa import qa_words
    from ccdflow.cli.caldb_render import shown_quality, table

    series = history(open_db(caldb_url), kind, stat, since, until, instrument,
                     include_bad=include_bad, filter=filter_)
    key = stat_name(kind, stat)
    if plot is not None:
        title = f"{kind} masters: {key}" + "".join(f", {v}" for v in (instrument, filter_) if v)
        plot_history(series, plot, title)
    if as_json:
        echo_json({"type": kind, "stat": key, "series": series,
                    "plot": None if plot is None else str(plot)})
        return
    out = out_console()
    tab = table("id", "observed (UTC)", key, "filter", "exp (s)", "temp (C)", "quality", "qa",
                "file")
    for p in series:
        temp = "-" if p["temperature"] is None else f"{p['temperature']:.1f}"
        tab.add_row(str(p["id"]), p["obs_time"][:16].replace("T", " "), f"{p['value']:.6g}",
                    escape(p["filter"] or "-"), f"{p['exposure_time'] or 0:g}", temp,
                    shown_quality(p["quality"]), escape(qa_words(p["qa"])),
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
        cmd = click.command(name)(func)
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
    db = open_db(caldb_url, write=True)
    db.mark_bad(cal_id, reason, who=who)
    used = len(db.used_by(cal_id))
    click.echo(f"calibration {cal_id} marked bad: {reason}")
    if used:
        click.echo(f"{used} product{'s' * (used != 1)} used it; `ccdflow caldb stale` lists what to "
                   "re-reduce")


@_quality_command("mark-good", """Mark a calibration good: undoes mark-bad, and accepts a master
    the QA held as suspect (it is chosen from now on; the event is logged).

    \b
    Examples:
      ccdflow caldb mark-good 42 --reason "leak was in another night"
      ccdflow caldb mark-good 57 --reason "new dust donut is real: window cleaned 03-04"
    """)
@click.option("--reason", help="Why (kept in the record's history).")
def mark_good(cal_id: int, reason: str | None, who: str | None, caldb_url: str | None) -> None:
    open_db(caldb_url, write=True).mark_good(cal_id, reason, who=who)
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
    open_db(caldb_url, write=True).certify(cal_id, valid_from, valid_to, reason, who=who)
    end = valid_to.isoformat() if valid_to else "open-ended"
    click.echo(f"calibration {cal_id} valid from {valid_from.isoformat()} to {end}")


@_quality_command("decertify", """Remove a calibration's validity range (valid at any time again).

    \b
    Example:
      ccdflow caldb decertify 42 --reason "range was too narrow"
    """)
@click.option("--reason", help="Why (kept in the record's history).")
def decertify(cal_id: int, reason: str | None, who: str | None, caldb_url: str | None) -> None:
    open_db(caldb_url, write=True).decertify(cal_id, reason, who=who)
    click.echo(f"calibration {cal_id} has no validity range now")


@click.command("used-by")
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
        echo_json(products)
        return
    tab = table("product", "raw frame", "as", "observed (UTC)", "cost", "path")
    for p in products:
        cost = (p["receipt"] or {}).get("cost")
        tab.add_row(str(p["product_id"]), escape(p["raw_name"]), p["type"],
                    p["obs_time"][:16].replace("T", " "), "-" if cost is None else f"{cost:.4g}",
                    escape(p["path"]))
    if products:
        out_console().print(tab)
    click.echo(f"{len(products)} product{'s' * (len(products) != 1)} used calibration {cal_id}")


@click.command("stale")
@instrument_config_option
@caldb_options()
def stale(instrument_files: tuple[str, ...], caldb_url: str | None, as_json: bool) -> None:
    """Products whose best calibration today is not the one they used: re-reduce these.

    A product goes stale when a better master arrives or the one it used is marked bad.

    \b
    Example:
      ccdflow caldb stale --json | jq -r '.[].path' | sort -u
    """
    from ccdflow.caldb.rules import rule_for
    from ccdflow.cli.caldb_render import table

    instruments = plugin_manager(instrument_files).instruments
    rows = open_db(caldb_url).stale(lambda inst, kind: rule_for(instruments, inst, kind))
    if as_json:
        echo_json(rows)
        return
    tab = table("product", "type", "used", "best now", "reason", "path")
    for r in rows:
        tab.add_row(str(r["product_id"]), r["type"], str(r["used"]),
                    "none" if r["best_now"] is None else str(r["best_now"]),
                    escape(r["reason"]), escape(r["path"]))
    if rows:
        out_console().print(tab)
    n = len({r["product_id"] for r in rows})
    click.echo(f"{n} stale product{'s' * (n != 1)}")


@click.command("verify")
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
        echo_json({"checked": len(rows), "counts": counts, "problems": bad})
    else:
        if bad:
            tab = table("record", "id", "type", "status", "detail", "path")
            for r in bad:
                tab.add_row(r["record"], str(r["id"]), r["type"], f"[red]{r['status']}[/red]",
                            escape(r["detail"] or ""), escape(r["path"]))
            out_console().print(tab)
        click.echo(f"{len(rows)} files checked: " + ", ".join(f"{n} {s}" for s, n in counts.items()))
    if bad:
        sys.exit(EXIT_FAILURES)


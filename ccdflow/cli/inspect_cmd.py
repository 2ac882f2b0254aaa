"""`ccdflow inspect`: what ccdflow reads in each file, and where each value came from."""

from __future__ import annotations

import json

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccdflow.cli import EXIT_INPUT
from ccdflow.cli.options import instrument_config_option


@click.command("inspect")
@click.argument("files", nargs=-1, required=True, type=click.Path())
@click.option("--instrument", "instrument", help="Read the files as this instrument (see `ccdflow plugins`); "
              "default: each file's instrument, identified from its header.")
@instrument_config_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def command(ctx: click.Context, files: tuple[str, ...], instrument: str | None,
            instrument_files: tuple[str, ...], as_json: bool) -> None:
    """For each file: which instrument reads it and why the others do not, every normalised value
    with the keyword and raw value it came from (units converted, cards read by fallback), the
    frame type, the calibration group it joins, and the warnings. Exit status 3 when a file
    cannot be used."""
    from ccdflow.framework.engine.instrument_files import forced_instrument, manager_with_files
    from ccdflow.framework.headers.inspection import inspect_file
    from ccdflow.framework.headers.scan import iter_fits_files

    strict = (ctx.obj or {}).get("strict_plugins") or None
    manager = manager_with_files(instrument_files, strict=strict)
    forced = forced_instrument(manager, instrument)
    from ccdflow.plugins.steps.noise import detector_sources

    results = [inspect_file(path, manager, forced) for path in iter_fits_files(files)]
    for result in results:  # the values the steps will use: the steps' own resolver says
        if result.meta is not None:
            inst = manager.instrument(result.meta.instrument)
            result.sources += detector_sources(result.meta, inst, result.warnings)
    if as_json:
        click.echo(json.dumps([r.as_json() for r in results], indent=2))
    else:
        console = Console()
        for result in results:
            _show(console, result.as_json())
    if any(r.error for r in results):
        ctx.exit(EXIT_INPUT)


def _show(console: Console, found: dict) -> None:
    console.rule(escape(found["path"]))
    chosen = found["instrument"] or "none"
    console.print(f"instrument: [bold]{escape(chosen)}[/bold] ({found['chosen_by']})", highlight=False)
    for name, why in found["identification"].items():
        console.print(f"  {escape(name)}: {escape(why)}", highlight=False)
    if found["fields"]:
        table = Table(show_edge=False)
        for col in ("field", "value", "keyword", "raw", "how"):
            table.add_column(col)
        for f in found["fields"]:
            table.add_row(*(escape("-" if v is None else str(v)) for v in (
                f["field"], f["value"], f["keyword"], f["raw"], "; ".join(f["notes"]))))
        console.print(table)
    if found["group"]:
        group = ", ".join(f"{k}={v}" for k, v in found["group"].items())
        console.print(f"calibration group: {escape(group)}", highlight=False)
    for warning in found["warnings"]:
        console.print(f"[yellow]warning[/yellow] {escape(warning)}", highlight=False)
    if found["error"]:
        console.print(f"[red]cannot be used[/red]: {escape(found['error'])}", highlight=False)

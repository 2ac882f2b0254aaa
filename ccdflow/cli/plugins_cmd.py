"""`ccdflow plugins`: what is installed, what it provides, and what failed to load."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccdflow.cli.options import instrument_config_option
from ccdflow.framework.engine.instrument_files import RANK_NAMES, manager_with_files, user_instrument_dir


@click.command("plugins")
@instrument_config_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def command(ctx: click.Context, instrument_files: tuple[str, ...], as_json: bool) -> None:
    """List plugins (name, distribution, version), their steps, instruments and calibration types,
    and the instruments read from YAML files (your instrument folder, --instrument-config)."""
    strict = (ctx.obj or {}).get("strict_plugins") or None  # None: CCDFLOW_STRICT_PLUGINS
    manager = manager_with_files(instrument_files, strict=strict)
    folder = user_instrument_dir()
    files = [{"instrument": name, "path": o.path, "source": RANK_NAMES[o.rank], "extends": o.extends}
             for name, o in manager.origins.items() if o.path is not None]
    if as_json:
        click.echo(json.dumps({
            "plugins": [asdict(p) for p in manager.plugins.values()],
            "instrument_files": files,
            "instrument_folder": None if folder is None else str(folder),
            "failed": [asdict(f) for f in manager.failures],
            "blocked": manager.blocked,
        }, indent=2))
        return
    table = Table(title="ccdflow plugins")
    for col in ("plugin", "distribution", "version", "steps", "instruments", "calibration types"):
        table.add_column(col)
    for p in manager.plugins.values():
        # Names and errors come from third parties: escape them so '[...]' is not markup.
        table.add_row(*(escape(cell) for cell in (
            p.name, p.distribution or "-", p.version or "-",
            ", ".join(p.steps) or "-", ", ".join(p.instruments) or "-",
            ", ".join(p.calibration_types) or "-",
        )))
    console = Console()
    console.print(table)
    if files:
        found = Table(title="instruments from YAML files")
        for col in ("instrument", "extends", "from", "file"):
            found.add_column(col)
        for entry in files:
            found.add_row(*(escape(str(entry[k] or "-"))
                            for k in ("instrument", "extends", "source", "path")))
        console.print(found)
    where = escape(str(folder)) if folder else "(none: $CCDFLOW_INSTRUMENTS is empty)"
    console.print(f"your instrument folder: {where}", highlight=False)
    for f in manager.failures:
        where = escape(f"{f.name} ({f.distribution or '?'})")
        console.print(f"[red]failed[/red] {where}: {escape(f.error)}", highlight=False)
    for name in manager.blocked:
        console.print(f"[yellow]blocked[/yellow] {escape(name)} (CCDFLOW_DISABLE_PLUGINS)")

"""`ccdflow plugins`: what is installed, what it provides, and what failed to load."""

from __future__ import annotations

import json
from dataclasses import asdict

import click
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ccdflow.framework.engine.plugins import get_plugin_manager


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def command(ctx: click.Context, as_json: bool) -> None:
    """List plugins (name, distribution, version), their steps, instruments and calibration types."""
    strict = (ctx.obj or {}).get("strict_plugins") or None  # None: CCDFLOW_STRICT_PLUGINS
    manager = get_plugin_manager(strict=strict)
    if as_json:
        click.echo(json.dumps({
            "plugins": [asdict(p) for p in manager.plugins.values()],
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
    for f in manager.failures:
        where = escape(f"{f.name} ({f.distribution or '?'})")
        console.print(f"[red]failed[/red] {where}: {escape(f.error)}", highlight=False)
    for name in manager.blocked:
        console.print(f"[yellow]blocked[/yellow] {escape(name)} (CCDFLOW_DISABLE_PLUGINS)")

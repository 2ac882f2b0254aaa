"""`ccdflow config show`: the merged configuration and where every value came from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
import yaml
from rich.console import Console
from rich.table import Table

from ccdflow.cli.options import config_options

if TYPE_CHECKING:
    from ccdflow.framework.engine.config import ResolvedConfig
    from ccdflow.framework.engine.plugins import PluginManager


def resolve_from_options(ctx: click.Context, instrument, instrument_files, config_files, params
                         ) -> tuple[PluginManager, ResolvedConfig]:
    # imported here: pydantic, astropy and the plugins are not needed for `--help`
    from ccdflow.framework.engine import config as cfg
    from ccdflow.framework.engine.instrument_files import manager_with_files

    manager = manager_with_files(instrument_files, strict=(ctx.obj or {}).get("strict_plugins"))
    return manager, cfg.build(manager, instrument=instrument, config_files=config_files, params=params)


@click.group("config")
def command() -> None:
    """Inspect the layered configuration."""


@command.command("show")
@config_options
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.option("--yaml", "as_yaml", is_flag=True, help="Print the merged config as YAML.")
@click.pass_context
def show(ctx, instrument, instrument_files, config_files, params, as_json, as_yaml) -> None:
    """Print the merged step parameters and the layer each value came from.

    Layers, low to high: step default < instrument plugin < instrument file <
    site/night file < command line (-p).
    """
    _, resolved = resolve_from_options(ctx, instrument, instrument_files, config_files, params)
    if as_yaml:
        click.echo(yaml.safe_dump(resolved.as_dict(), sort_keys=False))
        return
    rows = [
        {"step": step, "param": key, "value": s.value, "layer": s.layer, "source": s.source}
        for step, settings in resolved.steps.items() for key, s in settings.items()
    ]
    recipes = {k: [e.step for e in v] for k, v in resolved.instrument.recipes.items()}
    summary = {
        "instrument": resolved.instrument.name,
        "instrument_source": resolved.instrument_source,
        "config_hash": resolved.config_hash(),
        "recipes": recipes,
        "params": rows,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    console = Console()
    console.print(f"instrument [bold]{resolved.instrument.name}[/bold] from {resolved.instrument_source}"
                  f"  (config hash {summary['config_hash']})", highlight=False)
    for kind, steps in recipes.items():
        console.print(f"  recipe {kind}: {' -> '.join(steps)}", highlight=False)
    table = Table("step", "param", "value", "layer", "source")
    for r in rows:
        table.add_row(r["step"], r["param"], repr(r["value"]), r["layer"], r["source"])
    console.print(table)

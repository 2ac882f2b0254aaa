"""`ccdflow config show`: the merged configuration and where every value came from."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import click
import yaml
from rich.console import Console
from rich.markup import escape
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
    """Print the merged step parameters and master settings, the layer each value came from,
    and what each step and value does.

    Layers, low to high: step default < instrument plugin < instrument file <
    site/night file < command line (-p).
    """
    from ccdflow.framework.engine.master_options import MasterOptions
    from ccdflow.framework.engine.param_docs import param_docs, step_description

    manager, resolved = resolve_from_options(ctx, instrument, instrument_files, config_files, params)
    if as_yaml:
        click.echo(yaml.safe_dump(resolved.as_dict(), sort_keys=False))
        return
    rows = []
    for step, settings in resolved.steps.items():
        docs = param_docs(resolved.step_classes[step].Params)
        rows += [{"step": step, "param": key, "value": s.value, "layer": s.layer, "source": s.source,
                  "description": docs[key]["description"]} for key, s in settings.items()]
    master_docs = param_docs(MasterOptions)
    masters = [{"type": kind, "option": key, "value": s.value, "layer": s.layer, "source": s.source,
                "description": master_docs[key]["description"]}
               for kind, settings in resolved.masters.items() for key, s in settings.items()]
    recipes = {k: [e.step for e in v] for k, v in resolved.instrument.recipes.items()}
    about = {name: step_description(cls) for name, cls in resolved.step_classes.items()}
    kinds = {kind: manager.calibration_types[kind].description for kind in resolved.masters}
    summary = {
        "instrument": resolved.instrument.name,
        "instrument_source": resolved.instrument_source,
        "config_hash": resolved.config_hash(),
        "recipes": recipes,
        "steps": about,
        "params": rows,
        "masters": masters,
        "calibration_types": kinds,
    }
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    console = Console()
    console.print(f"instrument [bold]{escape(resolved.instrument.name)}[/bold] from "
                  f"{escape(resolved.instrument_source)}  (config hash {summary['config_hash']})",
                  highlight=False)
    for kind, steps in recipes.items():
        console.print(f"  recipe {kind}: {' -> '.join(steps)}", highlight=False)
    console.print(settings_table(
        "step parameters (-p STEP.PARAM=VALUE, `steps:` in a YAML)",
        [(step, about[step], [r for r in rows if r["step"] == step])
         for step in resolved.steps], "param"))
    console.print(settings_table(
        "masters: how the masters of each calibration type are combined (`masters:` in a YAML)",
        [(kind, kinds[kind], [r for r in masters if r["type"] == kind])
         for kind in resolved.masters],
        "option"))


def settings_table(title: str, groups: list[tuple[str, str, list[dict]]], key: str) -> Table:
    """One row per group (a step, a calibration type) with its description, then one per value:
    the value, the layer that set it (and the file or plugin, unless it is the default) and what
    the value does."""
    table = Table(title=title, title_justify="left")
    table.add_column("name", no_wrap=True)
    table.add_column("value", max_width=16, overflow="fold")
    table.add_column("set by", overflow="fold")
    table.add_column("description", ratio=1)
    for name, description, rows in groups:
        if table.row_count:
            table.add_section()
        table.add_row(f"[bold]{escape(name)}[/bold]", "", "", escape(description))
        for r in rows:
            default = r["layer"] in ("step default", "type default")
            where = r["layer"] if default else f"{r['layer']} ({r['source']})"
            table.add_row(f"  {escape(r[key])}", escape(repr(r["value"])), escape(where),
                          escape(r["description"]))
    return table

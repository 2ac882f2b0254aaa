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
from ccdflow.framework.engine.param_docs import param_docs, step_description


@click.command("plugins")
@instrument_config_option
@click.option("--json", "as_json", is_flag=True, help="Print machine-readable JSON.")
@click.pass_context
def command(ctx: click.Context, instrument_files: tuple[str, ...], as_json: bool) -> None:
    """List plugins (name, distribution, version), their steps (with every parameter: type,
    default, description), instruments and calibration types, and the instruments read from
    YAML files (your instrument folder, --instrument-config)."""
    strict = (ctx.obj or {}).get("strict_plugins") or None  # None: CCDFLOW_STRICT_PLUGINS
    manager = manager_with_files(instrument_files, strict=strict)
    folder = user_instrument_dir()
    files = [{"instrument": name, "path": o.path, "source": RANK_NAMES[o.rank], "extends": o.extends}
             for name, o in manager.origins.items() if o.path is not None]
    steps = {name: {"plugin": manager.owner("step", name), "description": step_description(cls),
                    "calibrations": list(cls.calibrations),
                    "optional_calibrations": list(cls.optional_calibrations),
                    "params": param_docs(cls.Params)}
             for name, cls in manager.steps.items()}
    caltypes = {name: {"plugin": manager.owner("calibration type", name),
                       "description": cls.description, "frame_type": cls.frame_type}
                for name, cls in manager.calibration_types.items()}
    if as_json:
        click.echo(json.dumps({
            "plugins": [asdict(p) for p in manager.plugins.values()],
            "steps": steps,
            "calibration_types": caltypes,
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
    console.print(steps_table(steps))
    kinds = Table(title="calibration types", title_justify="left")
    for col in ("type", "plugin", "made from", "description"):
        kinds.add_column(col)
    for name, c in caltypes.items():
        kinds.add_row(*(escape(str(cell)) for cell in (
            name, c["plugin"], c["frame_type"] or "other masters", c["description"] or "-")))
    console.print(kinds)
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


def steps_table(steps: dict[str, dict]) -> Table:
    """Every step with its plugin and description, then each parameter: type, default and what
    it does (a plugin's texts are escaped, so '[...]' in them is not markup)."""
    table = Table(title="steps and their parameters (-p STEP.PARAM=VALUE)", title_justify="left")
    table.add_column("step / parameter", no_wrap=True)
    table.add_column("type = default", max_width=24, overflow="fold")
    table.add_column("description", ratio=1)
    for name, step in steps.items():
        if table.row_count:
            table.add_section()
        needs = ", ".join(step["calibrations"] + [f"{c} (optional)" for c in step["optional_calibrations"]])
        about = step["description"] or "(no description given by its plugin)"
        table.add_row(f"[bold]{escape(name)}[/bold]", escape(f"plugin {step['plugin']}"),
                      escape(about + (f" Needs: {needs}." if needs else "")))
        for param, doc in step["params"].items():
            table.add_row(f"  {escape(param)}", escape(f"{doc['type']} = {doc['default']!r}"),
                          escape(doc["description"]))
    return table

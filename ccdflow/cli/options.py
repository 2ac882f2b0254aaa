"""Options shared by several commands, declared without heavy imports (click only), so every
command's `--help` stays fast."""

from __future__ import annotations

from collections.abc import Callable

import click

#: Environment variable naming the caldb (ccdflow.caldb.connection reads the same one).
CALDB_ENV_VAR = "CCDFLOW_CALDB"


#: ``--instrument-config FILE`` (repeatable): every command that reads frames or rules takes it.
instrument_config_option = click.option(
    "--instrument-config", "instrument_files", multiple=True, metavar="FILE",
    type=click.Path(exists=True, dir_okay=False),
    help="Instrument YAML (complete, or `extends: NAME` with overrides), used like an installed "
         "instrument: identification, header map, geometry, recipes and caldb rules; it replaces "
         "an instrument of the same name. Repeatable. Files in $CCDFLOW_INSTRUMENTS (default "
         "~/.config/ccdflow/instruments/) are found without this option.")


def config_options(func: Callable) -> Callable:
    """Options of every command that resolves a run configuration."""
    for option in reversed([
        click.option("--instrument", "instrument",
                     help="Read every frame as this instrument (see `ccdflow plugins`); default: "
                          "each frame's instrument, identified from its header."),
        instrument_config_option,
        click.option("--config", "config_files", multiple=True, type=click.Path(dir_okay=False),
                     help="Site/night YAML file(s) with `instrument:` and `steps:`; later wins."),
        click.option("-p", "--param", "params", multiple=True, metavar="STEP.PARAM=VALUE",
                     help="Override a step parameter, e.g. -p overscan.method=median."),
    ]):
        func = option(func)
    return func


def caldb_options(json_output: bool = True) -> Callable:
    """``--caldb`` (every command) and ``--json`` (query commands)."""

    def decorate(func: Callable) -> Callable:
        if json_output:
            func = click.option("--json", "as_json", is_flag=True,
                                help="Print machine-readable JSON.")(func)
        return click.option(
            "--caldb", "caldb_url", metavar="URL|PATH", envvar=CALDB_ENV_VAR, show_envvar=True,
            help="SQLite file or SQLAlchemy URL (e.g. postgresql+psycopg://user@host/caldb). "
                 "Default: $XDG_DATA_HOME/ccdflow/caldb.sqlite "
                 "(~/.local/share/ccdflow/caldb.sqlite).")(func)

    return decorate

"""The ``ccdflow`` command. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import logging
import sys

import click
from rich.console import Console
from rich.logging import RichHandler

from ccdflow import __version__
from ccdflow.framework.errors import CcdflowError, ConfigError, PluginError

err_console = Console(stderr=True)

#: Exit statuses shared by every command (documented in docs/cli.md).
EXIT_OK, EXIT_FAILURES, EXIT_CONFIG, EXIT_INPUT = 0, 1, 2, 3


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="ccdflow")
@click.option("-v", "--verbose", count=True, help="More log output (-vv for debug).")
@click.option(
    "--strict-plugins", is_flag=True, envvar="CCDFLOW_STRICT_PLUGINS",
    help="Fail when any plugin cannot be loaded (default: report and skip it).",
)
@click.pass_context
def cli(ctx: click.Context, verbose: int, strict_plugins: bool) -> None:
    """ccdflow: turn raw CCD/CMOS frames into science-ready images.

    Start with `ccdflow demo`, which simulates a night and reduces it.
    """
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(
        level=level, format="%(message)s", handlers=[RichHandler(console=err_console, show_path=False)]
    )
    ctx.obj = {"strict_plugins": strict_plugins}


def _add_commands() -> None:
    from ccdflow.cli import caldb_cmd, config_cmd, demo_cmd, plugins_cmd, simulate_cmd

    for module in (plugins_cmd, config_cmd, simulate_cmd, demo_cmd, caldb_cmd):
        cli.add_command(module.command)


def main() -> None:
    """Console-script entry: turns ccdflow errors into one clear line and an exit status."""
    _add_commands()
    try:
        status = cli.main(standalone_mode=False)
        if isinstance(status, int) and status:  # ctx.exit(n) returns n in this mode
            sys.exit(status)
    except click.exceptions.Abort:
        err_console.print("aborted")
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (ConfigError, PluginError) as exc:
        err_console.print(f"[red]configuration error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(EXIT_CONFIG)
    except CcdflowError as exc:
        err_console.print(f"[red]error:[/red] {exc}", markup=True, highlight=False)
        sys.exit(EXIT_INPUT)

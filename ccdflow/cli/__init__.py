"""The ``ccdflow`` command. Each sub-command lives in its own module of this package."""

from __future__ import annotations

import importlib
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


#: Sub-commands: module and one-line help. Modules are imported only when their command runs,
#: so `ccdflow --help` does not pay for astropy, pydantic or SQLAlchemy.
COMMANDS = {
    "caldb": ("ccdflow.cli.caldb_cmd", "The calibration database: add, best, history, quality..."),
    "config": ("ccdflow.cli.config_cmd", "Inspect the layered configuration."),
    "demo": ("ccdflow.cli.demo_cmd", "Simulate a night, build masters, reduce it, compare with truth."),
    "night": ("ccdflow.cli.night_cmd", "Reduce a night: masters, science frames, provenance, report."),
    "master": ("ccdflow.cli.master_cmd", "Build master bias/dark/flat frames and bad-pixel masks."),
    "plugins": ("ccdflow.cli.plugins_cmd", "List plugins, their steps and instruments."),
    "simulate": ("ccdflow.cli.simulate_cmd", "Simulate a night of raw frames and its truth."),
    "watch": ("ccdflow.cli.watch_cmd", "Reduce new frames as they land in a folder (real time)."),
    "stack": ("ccdflow.cli.stack_cmd", "Combine reduced exposures on one pixel grid; cosmic-ray masks."),
}


class LazyGroup(click.Group):
    """A group that imports a sub-command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        command = super().get_command(ctx, name)
        if command is None and name in COMMANDS:
            command = importlib.import_module(COMMANDS[name][0]).command
            self.add_command(command, name)
        return command

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMANDS[name][1] if name in COMMANDS else
                 (self.commands[name].get_short_help_str(limit=70))) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
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
    """Load every sub-command now (tests and tools that inspect ``cli.commands``)."""
    for name in COMMANDS:
        cli.get_command(click.Context(cli), name)


def main() -> None:
    """Console-script entry: turns ccdflow errors into one clear line and an exit status."""
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

"""The ``ccdflow`` command. Each sub-command lives in its own module of this package.

Every error that ends a command becomes one line on stderr and an exit status here, in
:func:`exit_status` (docs/cli.md, "Exit statuses"): the root group, the ``master`` and ``caldb``
groups and :func:`main` all use it, so a caldb that cannot be opened reads the same everywhere.
"""

from __future__ import annotations

import atexit
import contextlib
import importlib
import logging
import os
import re
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.markup import escape

from ccdflow import __version__
from ccdflow.framework.engine.errors import CcdflowError, ConfigError, DiskFullError, PluginError
from ccdflow.pipeline.runlog import FILE_ONLY, for_console

#: The root context's ``meta`` key for the command line's arguments (ccdflow.cli.command_log).
ARGV_KEY = "ccdflow.argv"

err_console = Console(stderr=True)
log = logging.getLogger("ccdflow.cli")

#: Exit statuses shared by every command (documented in docs/cli.md); a signal N gives 128 + N.
EXIT_OK, EXIT_FAILURES, EXIT_CONFIG, EXIT_INPUT = 0, 1, 2, 3


class Interrupted(KeyboardInterrupt):
    """SIGTERM (or SIGINT) during a run: unwinds like Ctrl-C, so every writer removes its
    temporary file and the Dask cluster is closed, then exits 128 + the signal's number."""

    def __init__(self, signum: int) -> None:
        super().__init__(signum)
        self.signum = signum


@contextmanager
def signals_interrupt(first: Callable[[int], None] | None = None) -> Iterator[Callable[[], None]]:
    """SIGINT and SIGTERM raise :class:`Interrupted` in the main thread. With ``first``, the first
    signal calls it instead (a graceful stop, as in `watch`) and the second interrupts. Signals
    after that are only logged: the run is already cleaning up, and a traceback from inside that
    clean-up would be the one thing this is here to prevent.

    Yields ``check()``, to call between units of work: Python drops an exception raised by a
    signal handler while a finaliser runs, and ``check`` raises it again so such a signal still
    stops the run. The dropped one is not printed (``sys.unraisablehook`` skips an
    :class:`Interrupted`): its "Exception ignored in ... Traceback" was the one traceback a
    signal could still put on stderr.
    """
    count = [0]
    interrupted: list[int] = []

    def handler(signum: int, _frame: Any) -> None:
        count[0] += 1
        if first is not None and count[0] == 1:
            first(signum)
        elif count[0] <= (1 if first is None else 2):
            interrupted.append(signum)
            raise Interrupted(signum)
        else:
            log.warning("%s: already stopping", signal.Signals(signum).name)

    def check() -> None:
        if interrupted:
            raise Interrupted(interrupted[0])

    unraisable = sys.unraisablehook

    def hook(info: Any) -> None:
        if not isinstance(info.exc_value, Interrupted):  # ours is raised again by check()
            unraisable(info)

    previous = {s: signal.signal(s, handler) for s in (signal.SIGINT, signal.SIGTERM)}
    sys.unraisablehook = hook
    try:
        yield check
    finally:
        sys.unraisablehook = unraisable
        for sig, old in previous.items():
            signal.signal(sig, old)


def _terminate(signum: int, _frame: Any) -> None:
    raise Interrupted(signum)


def exit_status(exc: BaseException) -> tuple[int, str, str] | None:
    """(exit status, label, one-line message) for an error that ends a command, or None for a
    bug (which keeps its traceback). Recognises SQLAlchemy's errors without importing it."""
    if isinstance(exc, KeyboardInterrupt):
        signum = getattr(exc, "signum", signal.SIGINT)
        return (128 + signum, "interrupted", f"{signal.Signals(signum).name}: stopped; temporary "
                f"files were removed; run the same command again to finish")
    if isinstance(exc, ConfigError | PluginError):
        return EXIT_CONFIG, "configuration error", str(exc)
    if isinstance(exc, CcdflowError):
        return EXIT_INPUT, "error", str(exc)
    sqlalchemy_exc = sys.modules.get("sqlalchemy.exc")
    if sqlalchemy_exc is not None and isinstance(exc, sqlalchemy_exc.SQLAlchemyError):
        from ccdflow.caldb.connection import first_line  # loaded: SQLAlchemy raised this

        url = _caldb_url()
        text = first_line(exc)
        return EXIT_INPUT, "database error", f"{url}: {text}{_hint(text)}"
    if isinstance(exc, OSError):
        where = exc.filename or ""
        if exc.errno in DiskFullError.ERRNOS:
            return EXIT_INPUT, "error", str(DiskFullError.in_folder(where or "the output folder"))
        text = exc.strerror or str(exc)
        return EXIT_INPUT, "error", f"{where}: {text}" if where else text
    return None


def _caldb_url() -> str:
    ctx = click.get_current_context(silent=True)
    return (ctx.find_root().meta.get("caldb_url") if ctx else None) or "the caldb"


def _hint(text: str) -> str:
    if re.search(r'database ".*" does not exist', text):
        return "; create the database on the server first (e.g. `createdb caldb`)"
    if re.search(r"no such table|relation .* does not exist", text):
        return "; run `ccdflow caldb init` on it"
    return ""


def fail(status: int, label: str, message: object) -> NoReturn:
    """One red line on stderr (and in the command's log, if it keeps one), then exit with ``status``."""
    log.error("%s: %s", label, message, extra=FILE_ONLY)
    err_console.print(f"[red]{label}:[/red] {escape(str(message))}", highlight=False, soft_wrap=True)
    sys.exit(status)


def exit_on_error(exc: BaseException) -> NoReturn:
    """Exit as :func:`exit_status` says, or re-raise a bug."""
    mapped = exit_status(exc)
    if mapped is None:
        raise exc
    if not isinstance(exc, CcdflowError | KeyboardInterrupt):
        log.debug("details", exc_info=exc)  # -vv: the traceback behind a database or OS error
    fail(*mapped)


class ErrorsToExit(click.Group):
    """Mixin for click groups: errors of any sub-command become :func:`exit_status`'s line and
    status, also under CliRunner (where :func:`main` is not involved)."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (Exception, KeyboardInterrupt) as exc:
            if isinstance(exc, click.ClickException | click.exceptions.Exit | click.Abort):
                raise
            exit_on_error(exc)


class ErrorsToExitGroup(ErrorsToExit, click.Group):
    """A click group whose commands' errors end as one line and the documented status."""


#: Sub-commands: module and one-line help. Modules are imported only when their command runs,
#: so `ccdflow --help` does not pay for astropy, pydantic or SQLAlchemy.
COMMANDS = {
    "caldb": ("ccdflow.cli.caldb_cmd", "The calibration database: add, best, history, quality..."),
    "config": ("ccdflow.cli.config_cmd", "Inspect the layered configuration."),
    "demo": ("ccdflow.cli.demo_cmd", "Simulate a night, build masters, reduce it, compare with truth."),
    "inspect": ("ccdflow.cli.inspect_cmd", "What ccdflow reads in each file, and from which keywords."),
    "night": ("ccdflow.cli.night_cmd", "Reduce a night: masters, science frames, provenance, report."),
    "master": ("ccdflow.cli.master_cmd", "Build master bias/dark/flat frames and bad-pixel masks."),
    "plugins": ("ccdflow.cli.plugins_cmd", "List plugins, their steps and instruments."),
    "reduce": ("ccdflow.cli.reduce_cmd", "Reduce single frames: the night's recipe, products, provenance."),
    "simulate": ("ccdflow.cli.simulate_cmd", "Simulate a night of raw frames and its truth."),
    "watch": ("ccdflow.cli.watch_cmd", "Reduce new frames as they land in a folder (real time)."),
    "stack": ("ccdflow.cli.stack_cmd", "Combine reduced exposures on one pixel grid; cosmic-ray masks."),
}


class LazyGroup(ErrorsToExit, click.Group):
    """A group that imports a sub-command's module on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *COMMANDS})

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        ctx.meta[ARGV_KEY] = list(args)  # the command line, for the header of its log
        return super().parse_args(ctx, args)

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
    console = RichHandler(console=err_console, show_path=False, level=level)
    console.addFilter(for_console)  # records for the log file only (OUT/ccdflow.log) stay off it
    logging.basicConfig(level=level, format="%(message)s", handlers=[console])
    ctx.obj = {"strict_plugins": strict_plugins}


def _add_commands() -> None:
    """Load every sub-command now (tests and tools that inspect ``cli.commands``)."""
    for name in COMMANDS:
        cli.get_command(click.Context(cli), name)


def main() -> None:
    """Console-script entry: turns ccdflow errors into one clear line and an exit status.

    SIGTERM is made to unwind like Ctrl-C (writers remove their temporary files) and to end
    with status 143 and one line, in every command. Once the command has ended (its outputs
    written, its status decided), SIGINT and SIGTERM are ignored: Python's shutdown puts the
    default handlers back, and a signal then killed a finished run with no message (-15).
    """
    as_command = _run_as_command()
    if as_command:  # before any command imports numpy: ccdflow.cli.process_tuning
        from ccdflow.cli.process_tuning import single_threaded_blas

        single_threaded_blas()
    signal.signal(signal.SIGTERM, _terminate)
    try:
        status = cli.main(standalone_mode=False)
        if isinstance(status, int) and status:  # ctx.exit(n) returns n in this mode
            sys.exit(status)
    except click.exceptions.Abort:  # Ctrl-C outside a command (e.g. at a prompt)
        fail(130, "interrupted", "SIGINT")
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except (Exception, KeyboardInterrupt) as exc:  # raised outside the groups' invoke
        exit_on_error(exc)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, signal.SIG_IGN)
    if as_command:
        exit_finished()


def _run_as_command() -> bool:
    """True when this process is the `ccdflow` command (the console script or `python -m
    ccdflow`), not a notebook or another program that called :func:`main`: only the command's
    own process may end without Python's teardown."""
    entry = sys.modules.get("__main__")
    spec = getattr(entry, "__spec__", None)
    if spec is not None and spec.name == "ccdflow.__main__":
        return True
    return Path(str(getattr(entry, "__file__", "") or "")).stem == "ccdflow"


def exit_finished() -> NoReturn:
    """End a command that succeeded without Python's interpreter teardown: freeing every module
    and object took 0.2-0.4 s of a `ccdflow master` run (a tenth of a master's wall time) and
    changes nothing the run wrote. The atexit handlers (log files, coverage) still run and the
    standard streams are flushed; with any other non-daemon thread alive the ordinary exit joins
    it instead."""
    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon and t is not main_thread for t in threading.enumerate()):
        sys.exit(0)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe: nothing to deliver
            stream.flush()
    os._exit(0)

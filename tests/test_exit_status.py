"""One error -> exit status map (ccdflow.cli.exit_status) for every command: the root group
applies it to every sub-command, database errors are recognised there and only there."""

from __future__ import annotations

import errno
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner
from sqlalchemy.exc import OperationalError, ProgrammingError

from ccdflow import cli as cli_package
from ccdflow.cli import ErrorsToExit
from ccdflow.framework.engine.errors import ConfigError, PluginError, UnprocessableInputError

ROOT = Path(__file__).resolve().parents[1]


def invoke_raising(exc: BaseException):
    """Run a throwaway root command that raises ``exc``, as ``ccdflow tp-raise``."""

    @click.command("tp-raise")
    def command() -> None:
        raise exc

    cli_package.cli.add_command(command)
    try:
        return CliRunner().invoke(cli_package.cli, ["tp-raise"])
    finally:
        cli_package.cli.commands.pop("tp-raise")


@pytest.mark.parametrize(("exc", "status", "line"), [
    (ConfigError("bad parameter"), 2, "configuration error: bad parameter"),
    (PluginError("plugin 'x' failed"), 2, "configuration error: plugin 'x' failed"),
    (UnprocessableInputError("no frames"), 3, "error: no frames"),
    (OperationalError("SELECT", {}, Exception("database is locked")), 3,
     "database error: the caldb: database is locked"),
    (ProgrammingError("SELECT", {}, Exception('relation "calibration" does not exist')), 3,
     "run `ccdflow caldb init` on it"),
    (OSError(errno.ENOSPC, "No space left on device", "/out/x.fits"), 3,
     "error: no space left in /out/x.fits"),
    (KeyboardInterrupt(), 130, "interrupted: SIGINT"),
], ids=["config", "plugin", "input", "sqlalchemy", "no-table", "disk-full", "ctrl-c"])
def test_errors_of_a_command_end_as_one_line_and_the_shared_status(exc, status, line):
    result = invoke_raising(exc)
    assert result.exit_code == status, result.output
    assert line in result.output and "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) <= 2  # one line, wrapped at most once


def test_a_bug_keeps_its_traceback():
    result = invoke_raising(RuntimeError("a bug"))
    assert isinstance(result.exception, RuntimeError)


def test_every_command_runs_under_the_map_and_only_cli_init_knows_sqlalchemy_errors():
    cli_package._add_commands()
    assert isinstance(cli_package.cli, ErrorsToExit)  # covers every sub-command and group
    for name, command in cli_package.cli.commands.items():
        if isinstance(command, click.Group) and name in ("caldb", "master"):
            assert isinstance(command, ErrorsToExit), name  # also when invoked on its own
    recognising = [str(p.relative_to(ROOT)) for p in (ROOT / "ccdflow" / "cli").glob("*.py")
                   if re.search(r"SQLAlchemyError|OperationalError|DBAPIError", p.read_text())]
    assert recognising == ["ccdflow/cli/__init__.py"]

"""``ccdflow.log``: the log every command that writes outputs keeps beside them.

One line on the command's function, under ``@click.command`` and its options, naming the
parameter that holds the output::

    @command_log("outdir")             # OUT is a folder: OUT/ccdflow.log
    @command_log("out", beside=True)   # OUT is a file (master, stack): ccdflow.log in its folder

The log is appended to, one header line per run (``=== ccdflow night RAW --out OUT``, the
ccdflow version, the process id; every line starts with its UTC time), and takes the records of
every ``ccdflow.*`` logger at INFO, or DEBUG with ``-v``/``-vv``, and Python warnings (still
shown on the console as before). It is closed on every way out: the end line gives the exit
status, and for an error or Ctrl-C its one-line message (and, at DEBUG, the traceback). The
console keeps its own level (WARNING; INFO with -v, DEBUG with -vv) and never shows records
marked :data:`ccdflow.pipeline.runlog.FILE_ONLY`.

Records logged in Dask worker processes stay there: what a run's tasks did is logged by the
process driving them, from their results (:mod:`ccdflow.pipeline.runlog`).
"""

from __future__ import annotations

import functools
import logging
import os
import shlex
import sys
import time
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from ccdflow import __version__
from ccdflow.cli import ARGV_KEY, exit_status
from ccdflow.pipeline.runlog import FILE_ONLY

LOG_NAME = "ccdflow.log"
log = logging.getLogger("ccdflow.cli")


def command_log(param: str, *, beside: bool = False) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: run the command with its log open in the folder ``param`` names (``beside``:
    in the folder of the file ``param`` names)."""

    def decorate(func: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(func)
        def run(*args: Any, **kwargs: Any) -> Any:
            out = Path(kwargs[param])
            with open_log(out.parent if beside else out):
                return func(*args, **kwargs)

        return run

    return decorate


def verbosity() -> int:
    """How many -v the root command was given (0 outside a ``ccdflow`` command line)."""
    ctx = click.get_current_context(silent=True)
    return int((ctx.find_root().params.get("verbose") or 0) if ctx else 0)


def command_line() -> str:
    """The command as typed: ``ccdflow`` and the arguments the root group parsed."""
    ctx = click.get_current_context(silent=True)
    argv = ctx.find_root().meta.get(ARGV_KEY) if ctx else None
    return shlex.join(["ccdflow", *argv] if argv is not None else sys.argv)


class _UtcFormatter(logging.Formatter):
    """``2026-03-02T08:15:04Z INFO    ccdflow.night: ...``: UTC, as every time ccdflow writes."""

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)-7s %(name)s: %(message)s")

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(record.created))


class _FileOnceFolderExists(logging.FileHandler):
    """Appends to the log once its folder exists (it was there, or the command made it); records
    before that wait here. A command refused before any work (a configuration error, OUT in use
    elsewhere) thus leaves no folder behind just for its log, and its records are dropped."""

    def __init__(self, path: Path) -> None:
        super().__init__(path, mode="a", encoding="utf-8", delay=True)
        self.waiting: list[logging.LogRecord] = []
        self.broken = False

    def emit(self, record: logging.LogRecord) -> None:
        if self.broken:
            return
        if self.stream is None and not os.path.isdir(os.path.dirname(self.baseFilename)):
            self.waiting.append(record)
            return
        waiting, self.waiting = self.waiting, []
        for early in waiting:
            super().emit(early)
        super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802
        """A log that cannot be written (a full disk, a folder made read-only) is said once, in
        one line: not logging's traceback per record, nor silence."""
        error = sys.exc_info()[1]
        if not isinstance(error, OSError):
            super().handleError(record)
            return
        self._broken(error)

    def close(self) -> None:
        try:
            super().close()
        except OSError as error:  # the last bytes could not be flushed
            self._broken(error)

    def _broken(self, error: OSError) -> None:
        if not self.broken:
            self.broken = True
            sys.stderr.write(f"warning: {self.baseFilename}: {error.strerror or error}; the log stops "
                             "here\n")


@contextmanager
def open_log(folder: Path, verbose: int | None = None) -> Iterator[Path]:
    """Append to ``folder/ccdflow.log`` while the block runs (INFO, or DEBUG when ``verbose``)."""
    path = folder / LOG_NAME
    verbose = verbosity() if verbose is None else verbose
    handler = _FileOnceFolderExists(path)
    handler.setLevel(logging.DEBUG if verbose else logging.INFO)
    handler.setFormatter(_UtcFormatter())
    root = logging.getLogger("ccdflow")
    level = root.level
    root.addHandler(handler)
    # the file's level, or the console's when it asks for more (the console handler has its own)
    root.setLevel(min(handler.level, root.getEffectiveLevel()))
    shown = warnings.showwarning
    warnings.showwarning = _tee_warnings(shown)
    start = time.perf_counter()
    log.info("=== %s (ccdflow %s, pid %d)", command_line(), __version__, os.getpid(), extra=FILE_ONLY)
    status: object = 0
    try:
        yield path
    except SystemExit as exc:
        status = exc.code
        raise
    except click.exceptions.Exit as exc:
        status = exc.exit_code
        raise
    except (Exception, KeyboardInterrupt) as exc:
        status = _log_error(exc)
        raise
    finally:
        log.info("=== exit status %s after %.1f s", status, time.perf_counter() - start,
                 extra=FILE_ONLY)
        warnings.showwarning = shown
        root.removeHandler(handler)
        root.setLevel(level)
        handler.close()


def _log_error(exc: BaseException) -> object:
    """The error that ends the command, as the console will say it; its traceback at DEBUG."""

    if isinstance(exc, click.ClickException):
        log.error("%s", exc.format_message(), extra=FILE_ONLY)
        return exc.exit_code
    mapped = exit_status(exc)
    if mapped is None:
        log.error("unexpected %s: %s", type(exc).__name__, exc, exc_info=exc, extra=FILE_ONLY)
        return "1 (a bug: please report it with this log)"
    log.error("%s: %s", mapped[1], mapped[2], extra=FILE_ONLY)
    log.debug("traceback:\n%s", "".join(traceback.format_exception(exc)).rstrip(), extra=FILE_ONLY)
    return mapped[0]


def _tee_warnings(shown: Callable[..., None]) -> Callable[..., None]:
    """``warnings.showwarning`` that also logs the warning (file only: ``shown`` prints it)."""

    def show(message: Warning | str, category: type[Warning], filename: str, lineno: int,
             file: Any = None, line: str | None = None) -> None:
        logging.getLogger("ccdflow.warnings").warning(
            "%s: %s (%s:%d)", category.__name__, message, filename, lineno, extra=FILE_ONLY)
        shown(message, category, filename, lineno, file, line)

    return show

"""What every `ccdflow master` sub-command shares: options, reading the inputs, the
calibrations they need (given or from the caldb), a progress bar, the checks before a build and
the registration and summary after it."""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ccdflow.cli.options import CALDB_ENV_VAR, config_options

if TYPE_CHECKING:
    from ccdflow.framework.engine.config import ResolvedConfig
    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.plugins import PluginManager

# caldb_options and config_cmd import astropy and pydantic at module level: taken inside the
# functions, so `ccdflow master --help` stays as fast as `ccdflow --help`.

log = logging.getLogger("ccdflow.master")

_UNITS = {"": 1, "B": 1, "K": 1e3, "KB": 1e3, "M": 1e6, "MB": 1e6, "G": 1e9, "GB": 1e9,
          "KIB": 2**10, "MIB": 2**20, "GIB": 2**30}


class ByteSize(click.ParamType):
    """``1GB``, ``512MiB`` or a plain number of bytes."""

    name = "SIZE"

    def convert(self, value: Any, param: Any, ctx: Any) -> int:
        if isinstance(value, int):
            return value
        match = re.fullmatch(r"\s*([0-9.]+)\s*([A-Za-z]*)\s*", str(value))
        if not match or match.group(2).upper() not in _UNITS:
            self.fail(f"{value!r} is not a size such as 1GB, 512MB or 2GiB", param, ctx)
        size = int(float(match.group(1)) * _UNITS[match.group(2).upper()])
        if size < 2**20:
            self.fail(f"{value!r}: a memory limit below 1 MiB cannot hold a row band", param, ctx)
        return size


def common_options(func: Callable) -> Callable:
    for option in reversed([
        click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Master file to write (atomically); its folder gets ccdflow.log, appended "
                          "to by every run (INFO, DEBUG with -v)."),
        click.option("--bias", "bias_path", type=click.Path(exists=True, dir_okay=False),
                     help="Master bias to use (else the caldb's best)."),
        click.option("--dark", "dark_path", type=click.Path(exists=True, dir_okay=False),
                     help="Master dark to use (else the caldb's best)."),
        click.option("--caldb", "caldb_url", metavar="URL|PATH", envvar=CALDB_ENV_VAR, show_envvar=True,
                     help="Caldb to choose missing calibrations from and to --register in."),
        click.option("--register", is_flag=True, help="Add the new master to the caldb."),
        click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary."),
    ]):
        func = option(func)
    return config_options(func)


def scan_inputs(ctx: click.Context, files: tuple[str, ...], instrument: str | None,
                instrument_files: tuple[str, ...], config_files: tuple, params: tuple,
                frame_type: str | None = None) -> tuple[PluginManager, ResolvedConfig, list[FrameMeta]]:
    """Frames and the configuration of their instrument (:func:`ccdflow.pipeline.master_build.
    scan_inputs`: the instrument of the ``frame_type`` frames); files in a folder given that
    cannot be used are left out, said on stderr and in the log."""
    from ccdflow.framework.engine.instrument_files import forced_instrument, manager_with_files
    from ccdflow.pipeline import master_build

    manager = manager_with_files(instrument_files, strict=(ctx.find_root().obj or {}).get("strict_plugins"))
    forced = forced_instrument(manager, instrument)
    config, metas = master_build.scan_inputs(files, manager, forced, config_files, params,
                                             frame_type=frame_type, note=note)
    return manager, config, metas


def note(text: str) -> None:
    """A line about the inputs (what was left out and why): on stderr, and in the command's log."""
    from ccdflow.pipeline.runlog import FILE_ONLY

    click.echo(text, err=True)
    log.info("%s", text, extra=FILE_ONLY)


def load_calibrations(config: Any, frame_type: str, explicit: dict[str, str | None], meta: Any,
                      caldb_url: str | None) -> tuple[dict[str, Any], dict[str, str]]:
    """The given files, else the caldb's best (see
    :func:`ccdflow.pipeline.master_build.load_calibrations`), the caldb opened as every command
    opens it (never created empty)."""
    from ccdflow.cli.caldb_options import open_db
    from ccdflow.pipeline import master_build

    opener = None if caldb_url is None else (lambda: open_db(caldb_url))
    return master_build.load_calibrations(config, frame_type, explicit, meta, opener)


@contextmanager
def progress_bar(enabled: bool, total: int, label: str) -> Iterator[Callable[[str], None]]:
    """A Rich bar on stderr when it is a terminal; otherwise a no-op callback."""
    if not (enabled and sys.stderr.isatty()):
        yield lambda _: None
        return
    from rich.progress import Progress

    from ccdflow.cli import err_console

    with Progress(console=err_console, transient=True) as bar:
        task = bar.add_task(label, total=total)
        yield lambda what: bar.update(task, advance=1, description=f"{label}: {Path(what).name}")


def check_register_target(register: bool, caldb_url: str | None, out: Path) -> None:
    """Before the build: OUT must not be a file the caldb has a record of (registered
    calibrations never change), and with --register the caldb must be able to take the master."""
    from ccdflow.pipeline.immutable import refuse_registered

    refuse_registered(out, caldb_url)
    if register:
        from ccdflow.cli.caldb_options import open_db

        open_db(caldb_url, write=True)


def finish(summary: dict, out: Path, register: bool, caldb_url: str | None,
           manager: PluginManager | None, as_json: bool, t0: float) -> None:
    """Register when asked (``manager`` None: the command read no frame, load the plugins now),
    then print the summary."""
    if register:
        from ccdflow.cli.caldb_options import open_db, plugin_manager

        added = open_db(caldb_url).add(out, manager or plugin_manager())
        summary["caldb_id"], summary["caldb_new"] = added.id, added.created
        summary["caldb_quality"], summary["caldb_qa"] = added.quality, added.qa  # master QA
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    stats = ", ".join(f"{k[3:].lower()} {v}" for k, v in summary.get("stats", {}).items())
    source = f"from {summary['n_combined']} frame(s)" if summary["type"] != "bpm" else "(bad-pixel mask)"
    _log_summary(summary, f"wrote {summary['type']} {out} {source} in {summary['seconds']:.1f} s: {stats}")
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    click.echo(f"wrote {summary['type']} {out} {source}: {stats}")
    if summary.get("fallback"):
        click.echo(f"rejection fallback: {summary['fallback']}")
    if register:
        state = "added" if summary["caldb_new"] else "already present"
        click.echo(f"caldb: {state}, id {summary['caldb_id']}")
        if summary["caldb_qa"]:
            from ccdflow.caldb.qa import qa_words

            click.echo(f"master QA: {qa_words(summary['caldb_qa'])}")


def _log_summary(summary: dict, wrote: str) -> None:
    """What was built from what, into the command's log (ccdflow.cli.command_log); the console
    has it on stdout."""
    from ccdflow.pipeline.runlog import FILE_ONLY

    log.info("%s", wrote, extra=FILE_ONLY)
    for kind, path in summary.get("sources", {}).items():
        if path:
            log.info("%s: %s", kind, path, extra=FILE_ONLY)
    for kind, cal in summary.get("calibrations", {}).items():
        log.info("%s: %s (caldb id %s, sha256 %s)", kind, cal["path"], cal["caldb_id"], cal["sha256"],
                 extra=FILE_ONLY)
    for kind, why in summary.get("calibrations_absent", {}).items():
        log.info("no %s: %s", kind, why, extra=FILE_ONLY)
    if summary.get("fallback"):
        log.warning("rejection fallback: %s", summary["fallback"], extra=FILE_ONLY)
    if "caldb_id" in summary:
        from ccdflow.caldb.qa import qa_words

        log.info("caldb: %s, id %s, QA %s", "added" if summary["caldb_new"] else "already present",
                 summary["caldb_id"], qa_words(summary["caldb_qa"]), extra=FILE_ONLY)
    for path in summary.get("inputs", []):
        log.debug("input %s", path, extra=FILE_ONLY)

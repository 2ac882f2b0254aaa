"""`ccdflow night`: the morning job, from a raw folder to masters, reduced frames and a report.

How a run ends (docs/cli.md): 0 all done; 1 some frames or masters failed, or no file could be
used; 2 configuration error; 3 nothing to do or the run could not go on (caldb unusable, disk
full, OUT in use by another run); 130/143 interrupted by SIGINT/SIGTERM.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from ccdflow.cli import EXIT_FAILURES, EXIT_INPUT, fail, signals_interrupt
from ccdflow.cli.caldb_options import UtcTime
from ccdflow.cli.command_log import command_log
from ccdflow.cli.options import caldb_options, config_options

#: Files listed on stderr when none of RAWDIR's files could be used (all are in the report).
SHOWN_UNUSED = 20


def night_options(func):
    """Options shared by `night` and `watch`."""
    for option in reversed([
        click.option("--out", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Output folder: masters/, reduced/, report.html, report.json, config.yaml, "
                          "and ccdflow.log (appended to by every run: INFO, DEBUG with -v)."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes on this machine (Dask LocalCluster); 1 = serial in this "
                          "process. Default: the number of cores."),
        click.option("--scheduler", metavar="ADDRESS",
                     help="Use an existing Dask cluster, e.g. tcp://host:8786 (dask-jobqueue, SLURM...)."),
        click.option("--force", is_flag=True,
                     help="Redo every master and frame even when the ledger says it is up to date "
                          "(default: skip existing work that would come out the same)."),
        click.option("--dashboard", metavar="[HOST]:PORT",
                     help="Address of the LocalCluster's Dask dashboard (needs bokeh); a bare :PORT "
                          "means 127.0.0.1:PORT. Default: 127.0.0.1 at a free port."),
    ]):
        func = option(func)
    return func


def spec_from(outdir: Path, caldb_url: str | None, instrument, instrument_files, config_files, params,
              force: bool, caldb_as_of=None):
    """The run's spec, checked before any work (:func:`ccdflow.pipeline.spec.make_spec`)."""
    from ccdflow.pipeline.spec import make_spec

    root = click.get_current_context().find_root()
    return make_spec(outdir, caldb_url, instrument, instrument_files, config_files, params, force,
                     caldb_as_of, strict=(root.obj or {}).get("strict_plugins") or None)


@click.command("night")
@click.argument("rawdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@night_options
@click.option("--redo-stale", is_flag=True,
              help="Only re-reduce frames whose best calibration changed since they were reduced "
                   "(see `ccdflow caldb stale`); builds no masters.")
@click.option("--caldb-as-of", "caldb_as_of", type=UtcTime(), metavar="TIME",
              help="Choose every calibration with the caldb as it was at this UTC time (masters "
                   "ingested by then, with the quality and validity they had): replays a past "
                   "run's choices. Masters this run builds are written to OUT/masters but not "
                   "registered, so not chosen; the next run without this option registers them.")
@config_options
@caldb_options()
@command_log("outdir")
def command(rawdir: Path, outdir: Path, workers: int | None, scheduler: str | None, force: bool,
            dashboard: str | None, redo_stale: bool, caldb_as_of, instrument, instrument_files,
            config_files, params, caldb_url, as_json: bool) -> None:
    """Reduce a night: scan RAWDIR, build and register masters, reduce every science frame with
    the caldb's best calibrations, and write a report.

    Re-running does only what changed (the ledger in the caldb is keyed by raw checksum, config
    hash and calibration ids). One run at a time per OUTDIR (OUTDIR/.ccdflow.lock); temporary
    files left by a killed run are removed at the start.

    \b
    Exit status:
      0    every master and science frame built, reduced or already up to date
      1    some masters or frames failed (the rest are written), or no file could be used
      2    configuration error (nothing was done)
      3    no FITS file in RAWDIR, caldb unusable, disk full, OUTDIR in use (one line says why)
      130  interrupted by Ctrl-C (SIGINT); 143 by SIGTERM: temporary files removed, re-run
    """
    from rich.console import Console

    from ccdflow.pipeline.executor import make_executor
    from ccdflow.pipeline.night import run_night
    from ccdflow.pipeline.outlock import lock_outdir
    from ccdflow.pipeline.spec import environment, forget_environments

    require_fits_files(rawdir)
    spec = spec_from(outdir, caldb_url, instrument, instrument_files, config_files, params, force,
                     caldb_as_of)
    console = Console(stderr=True)
    with signals_interrupt() as check_signals, lock_outdir(Path(spec.outdir), "night"), \
            make_executor(workers, scheduler, dashboard) as executor, \
            _progress(console, as_json) as progress:
        tasks: dict[str, int] = {}

        def advance(stage: str, done: int, total: int) -> None:
            check_signals()
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result = run_night(rawdir, spec, executor, advance, redo_stale=redo_stale)
        check_signals()
        paths = write_report(result, environment(spec).db)
    forget_environments()
    counts = result.counts()
    if as_json:
        click.echo(json.dumps({"counts": counts, "seconds": result.seconds, "report": str(paths["json"]),
                               "html": str(paths["html"]), "failed": result.failed,
                               "failed_masters": failed_masters(result),
                               "stopped": getattr(result, "stopped", None),
                               "warnings": result.warnings, "caldb_as_of": result.caldb_as_of,
                               "unknown": result.unknown}, indent=2, default=str))
    else:
        _print_summary(Console(), result, counts, paths, outdir)  # the result: stdout
    exit_for(result, paths, as_json)


def write_report(result, db) -> dict:
    """The run's report (:func:`ccdflow.pipeline.report.write_report`), its time and where it
    went in the run's log."""
    import logging
    import time

    from ccdflow.pipeline.report import write_report as write

    start = time.perf_counter()
    paths = write(result, db)
    logging.getLogger("ccdflow.night").info("report: %s (%.1f s)", paths["html"], time.perf_counter() - start)
    return paths


def require_fits_files(rawdir: Path) -> None:
    """Exit 3 before any work when nothing under RAWDIR even looks like FITS
    (:func:`ccdflow.pipeline.night.require_fits_files`)."""
    from ccdflow.pipeline.night import require_fits_files as require

    require(rawdir)


def failed_masters(result) -> list[dict]:
    return [m for m in result.masters if m["status"] == "failed"]


def exit_for(result, paths: dict, as_json: bool, *, all_unused_fails: bool = True) -> None:
    """Exit status of a finished (or stopped) run, see the module docstring.
    ``all_unused_fails``: no usable file is a failure (`night`; `watch` may just be early)."""
    stopped = getattr(result, "stopped", None)  # the pipeline stopped: caldb lost, disk full
    if stopped:
        fail(EXIT_INPUT, "error", f"the run stopped: {stopped}; what was done is in "
                                  f"{paths['json']}; run the same command again once this is fixed")
    if all_unused_fails and result.unknown and not result.frames:
        if not as_json:
            groups = unused_by_reason(result.unknown)
            for reason, files in groups[:SHOWN_UNUSED]:
                which = files[0] if len(files) == 1 else f"{len(files)} files, e.g. {files[0]}"
                click.echo(f"not used ({which}): {reason}", err=True)
            if len(groups) > SHOWN_UNUSED:
                click.echo(f"... and {len(groups) - SHOWN_UNUSED} more reasons (see the report)",
                           err=True)
        fail(EXIT_FAILURES, "error", f"none of the {len(result.unknown)} file(s) in {result.rawdir} "
                                     f"could be used (reasons above and in {paths['json']})")
    if result.failed or failed_masters(result):
        click.get_current_context().exit(EXIT_FAILURES)


def unused_by_reason(unknown: list[dict]) -> list[tuple[str, list[str]]]:
    """Files not used, grouped by reason (a camera the tool does not know yet makes every file
    fail the same way: one line, not forty), most files first."""
    groups: dict[str, list[str]] = {}
    for entry in unknown:
        path, reason = str(entry["path"]), str(entry["reason"])
        groups.setdefault(reason.removeprefix(f"{path}: "), []).append(path)
    return sorted(groups.items(), key=lambda item: -len(item[1]))


def _progress(console, disabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False, disable=disabled)


def _print_summary(console, result, counts, paths, outdir: Path) -> None:
    """The result on stdout, one line each (no table: it is read in pipes and logs too)."""
    from rich.markup import escape

    rows = {"files": f"{counts['files']} ({counts['unreadable_or_unknown']} unreadable or unknown)",
            "frames": ", ".join(f"{v} {k}" for k, v in sorted(counts["frame_types"].items())) or "none",
            "masters": ", ".join(f"{v} {k}" for k, v in sorted(counts["masters"].items())) or "none",
            "science": ", ".join(f"{v} {k}" for k, v in sorted(counts["science"].items())) or "none",
            "time": ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items())}

    def say(text: str) -> None:
        console.print(text, highlight=False, soft_wrap=True)

    say(f"night {escape(result.rawdir)}")
    for label, value in rows.items():
        say(f"{label:<8} {escape(value)}")
    for entry in [*[m for m in result.masters if m["status"] == "failed"], *result.failed]:
        name = entry.get("name") or Path(entry["raw"]).name
        say(f"[red]failed[/red] {escape(name)}: {escape(entry['reason'])}")
    if result.unknown:
        say(f"[yellow]{len(result.unknown)} file(s) not used[/yellow] (reasons in the report)")
    for warning in sorted(result.warnings):  # the order tasks finished in is not the reader's
        say(f"[yellow]warning[/yellow] {escape(warning)}")
    say(f"report: {escape(str(shown_path(paths['html'], outdir)))}")
    say(f"log:    {escape(str(outdir / 'ccdflow.log'))}")


def shown_path(path: str | Path, outdir: Path) -> Path:
    """A file inside OUTDIR as the user named OUTDIR (relative stays relative)."""
    try:
        return outdir / Path(path).relative_to(outdir.resolve())
    except ValueError:
        return Path(path)

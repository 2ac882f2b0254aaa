"""`ccdflow night`: the morning job, from a raw folder to masters, reduced frames and a report."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ccdflow.cli import EXIT_FAILURES
from ccdflow.cli.options import caldb_options, config_options


def night_options(func):
    """Options shared by `night` and `watch`."""
    for option in reversed([
        click.option("--out", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
                     help="Output folder: masters/, reduced/, report.html, report.json, config.yaml."),
        click.option("--workers", type=click.IntRange(min=1), default=None,
                     help="Worker processes on this machine (Dask LocalCluster); 1 = serial in this "
                          "process. Default: the number of cores."),
        click.option("--scheduler", metavar="ADDRESS",
                     help="Use an existing Dask cluster, e.g. tcp://host:8786 (dask-jobqueue, SLURM...)."),
        click.option("--force", is_flag=True,
                     help="Redo every master and frame even when the ledger says it is up to date "
                          "(default: skip existing work that would come out the same)."),
    ]):
        func = option(func)
    return func


def spec_from(outdir: Path, caldb_url: str | None, instrument, instrument_file, config_files, params,
              force: bool):
    """Resolve the caldb (created or upgraded if needed) and check the config before any work."""
    from ccdflow.caldb import CalDB
    from ccdflow.caldb.connection import resolve_url
    from ccdflow.framework.config import build
    from ccdflow.framework.plugins import get_plugin_manager
    from ccdflow.pipeline.spec import RunSpec

    root = click.get_current_context().find_root()
    manager = get_plugin_manager(strict=(root.obj or {}).get("strict_plugins") or None)
    # A bad parameter or config file is a configuration error now, not a failure per frame later.
    build(manager, instrument=None if instrument_file else (instrument or "generic"),
          instrument_file=instrument_file, config_files=config_files, params=params)
    url = resolve_url(caldb_url)
    CalDB.create(url).close()
    return RunSpec(outdir=str(outdir.resolve()), caldb_url=url, instrument=instrument,
                   instrument_file=str(Path(instrument_file).resolve()) if instrument_file else None,
                   config_files=tuple(str(Path(c).resolve()) for c in config_files),
                   params=tuple(params), force=force)


@click.command("night")
@click.argument("rawdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@night_options
@click.option("--redo-stale", is_flag=True,
              help="Only re-reduce frames whose best calibration changed since they were reduced "
                   "(see `ccdflow caldb stale`); builds no masters.")
@config_options
@caldb_options()
def command(rawdir: Path, outdir: Path, workers: int | None, scheduler: str | None, force: bool,
            redo_stale: bool, instrument, instrument_file, config_files, params, caldb_url,
            as_json: bool) -> None:
    """Reduce a night: scan RAWDIR, build and register masters, reduce every science frame with
    the caldb's best calibrations, and write a report.

    Re-running does only what changed (the ledger in the caldb is keyed by raw checksum, config
    hash and calibration ids). Exit status: 0 when every science frame was reduced or already up
    to date; 1 when some failed (the rest are still written); 2 for a configuration error.
    """
    from rich.console import Console

    from ccdflow.pipeline.executor import make_executor
    from ccdflow.pipeline.night import run_night
    from ccdflow.pipeline.report import write_report
    from ccdflow.pipeline.spec import environment, forget_environments

    spec = spec_from(outdir, caldb_url, instrument, instrument_file, config_files, params, force)
    console = Console(stderr=True)
    with make_executor(workers, scheduler) as executor, _progress(console, as_json) as progress:
        tasks: dict[str, int] = {}

        def advance(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = progress.add_task(stage, total=total)
            progress.update(tasks[stage], completed=done, total=total)

        result = run_night(rawdir, spec, executor, advance, redo_stale=redo_stale)
        paths = write_report(result, environment(spec).db)
    forget_environments()
    counts = result.counts()
    if as_json:
        click.echo(json.dumps({"counts": counts, "seconds": result.seconds, "report": str(paths["json"]),
                               "html": str(paths["html"]), "failed": result.failed,
                               "unknown": result.unknown}, indent=2, default=str))
    else:
        _print_summary(console, result, counts, paths)
    if result.failed:
        click.get_current_context().exit(EXIT_FAILURES)


def _progress(console, disabled: bool):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<16}"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=console, transient=False, disable=disabled)


def _print_summary(console, result, counts, paths) -> None:
    from rich.table import Table

    table = Table("stage", "result", title=f"night {result.rawdir}")
    table.add_row("files", f"{counts['files']} ({counts['unreadable_or_unknown']} unreadable or unknown)")
    table.add_row("frames", ", ".join(f"{v} {k}" for k, v in sorted(counts["frame_types"].items())))
    table.add_row("masters", ", ".join(f"{v} {k}" for k, v in sorted(counts["masters"].items())) or "none")
    table.add_row("science", ", ".join(f"{v} {k}" for k, v in sorted(counts["science"].items())) or "none")
    table.add_row("time", ", ".join(f"{k} {v:.1f} s" for k, v in result.seconds.items()))
    console.print(table)
    for entry in [*[m for m in result.masters if m["status"] == "failed"], *result.failed]:
        name = entry.get("name") or Path(entry["raw"]).name
        console.print(f"[red]failed[/red] {name}: {entry['reason']}", highlight=False)
    if result.unknown:
        console.print(f"[yellow]{len(result.unknown)} file(s) not used[/yellow] (reasons in the report)")
    console.print(f"report: {paths['html']}", highlight=False)

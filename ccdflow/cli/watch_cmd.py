"""`ccdflow watch`: real-time reduction of a folder the camera writes into."""

from __future__ import annotations

import json
from pathlib import Path

import click

from ccdflow.cli import Interrupted, signals_interrupt
from ccdflow.cli.command_log import command_log
from ccdflow.cli.night_cmd import exit_for, failed_masters, night_options, shown_path, spec_from, write_report
from ccdflow.cli.options import caldb_options, config_options


@click.command("watch")
@click.argument("rawdir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@night_options
@click.option("--interval", type=click.FloatRange(min=0.05), default=2.0, show_default=True,
              help="Seconds between looks at RAWDIR.")
@click.option("--settle", type=click.FloatRange(min=0), default=2.0, show_default=True,
              help="A file is complete once its size has not changed for this many seconds.")
@click.option("--calibration-quiet", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Build a master once its calibration set has had no new frame for this long "
                   "(or at once when a science frame follows it).")
@config_options
@caldb_options()
@command_log("outdir")
def command(rawdir: Path, outdir: Path, workers: int | None, scheduler: str | None, force: bool,
            dashboard: str | None, interval: float, settle: float, calibration_quiet: float,
            instrument, instrument_files, config_files, params, caldb_url, as_json: bool) -> None:
    """Reduce each new science frame in RAWDIR as it lands, with the best masters in the caldb,
    and build masters when a calibration set is complete.

    Stop with Ctrl-C or SIGTERM: the work in hand is finished and a report is written (exit 0,
    or 1 when some frames or masters failed). A second signal stops at once (exit 130 or 143,
    temporary files removed). Exit 3 when the caldb cannot be used or is lost, the disk is
    full, or OUTDIR is in use by another run.
    """
    import signal

    from rich.console import Console

    from ccdflow.pipeline.executor import make_executor
    from ccdflow.pipeline.outlock import lock_outdir
    from ccdflow.pipeline.spec import environment, forget_environments
    from ccdflow.pipeline.watch import Watcher

    spec = spec_from(outdir, caldb_url, instrument, instrument_files, config_files, params, force)
    console = Console(stderr=True)  # what the watch is doing
    results = Console()  # what it did: masters and frames as they are done, then the report
    watchers: list[Watcher] = []

    def stop_gracefully(signum: int) -> None:
        if not watchers:  # still starting: nothing in hand to finish
            raise Interrupted(signum)
        console.print(f"{signal.Signals(signum).name}: stopping after the work in hand (send it "
                      f"again to stop at once)", highlight=False)
        watchers[0].stop.set()

    with signals_interrupt(first=stop_gracefully) as check_signals, \
            lock_outdir(Path(spec.outdir), "watch"), \
            make_executor(workers or 1, scheduler, dashboard) as executor:
        watcher = Watcher(rawdir, spec, executor, settle=settle, calibration_quiet=calibration_quiet)
        watchers.append(watcher)
        if not as_json:
            def say_master(entry: dict) -> None:
                colour = {"failed": "red", "built": "green"}.get(entry["status"], "default")
                results.print(f"master [{colour}]{entry['status']}[/{colour}] {entry['name']} "
                              f"({entry['n']} frames) {entry.get('reason', '')}", highlight=False)

            watcher.on_master = say_master
            console.print(f"watching {rawdir} (every {interval:g} s); Ctrl-C to stop", highlight=False)
        shown = [0]

        def report_progress(w: Watcher) -> None:
            check_signals()
            for entry in w.result.science[shown[0]:]:
                if not as_json:
                    colour = "red" if entry["status"] == "failed" else "green"
                    results.print(f"[{colour}]{entry['status']}[/{colour}] {Path(entry['raw']).name} "
                                  f"{entry.get('reason', '')}", highlight=False)
            shown[0] = len(w.result.science)

        result = watcher.run(interval, report_progress)
        paths = write_report(result, environment(spec).db)
    forget_environments()
    if as_json:
        click.echo(json.dumps({"counts": result.counts(), "report": str(paths["json"]),
                               "failed": result.failed, "failed_masters": failed_masters(result),
                               "stopped": getattr(result, "stopped", None),
                               "unknown": result.unknown}, indent=2, default=str))
    else:
        results.print(f"stopped; report: {shown_path(paths['html'], outdir)}", highlight=False)
    exit_for(result, paths, as_json, all_unused_fails=False)

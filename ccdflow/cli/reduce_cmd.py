"""`ccdflow reduce FILES... --out DIR`: single frames, with the night's recipe, products and
provenance (:mod:`ccdflow.pipeline.single`), named as the night names them, in ``DIR/reduced/``;
one line per frame in ``DIR/ccdflow.log`` (:mod:`ccdflow.cli.command_log`).

How a run ends (docs/cli.md): 0 every frame reduced; 1 some failed (the others are written);
2 configuration error (nothing was done); 3 caldb unusable, disk full, DIR in use.
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ccdflow.cli import EXIT_FAILURES, err_console, signals_interrupt
from ccdflow.cli.command_log import command_log
from ccdflow.cli.options import CALDB_ENV_VAR, config_options
from ccdflow.pipeline.runlog import FILE_ONLY  # per-frame lines: the log's (the console has its own)

log = logging.getLogger("ccdflow.reduce")


@click.command("reduce")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", "outdir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Output folder: products go to OUT/reduced/, named as `ccdflow night` names them.")
@click.option("--bias", type=click.Path(exists=True, dir_okay=False), help="Master bias to use.")
@click.option("--dark", type=click.Path(exists=True, dir_okay=False), help="Master dark to use.")
@click.option("--flat", type=click.Path(exists=True, dir_okay=False), help="Master flat to use.")
@click.option("--bpm", type=click.Path(exists=True, dir_okay=False), help="Bad-pixel mask to use.")
@click.option("--caldb", "caldb_url", metavar="URL|PATH", envvar=CALDB_ENV_VAR, show_envvar=True,
              help="Caldb that chooses the calibrations not given, as in a night, and records the "
                   "products. Without one, a calibration not given is not applied: its step is "
                   "SKIPPED and the product's header says why (CF_<type>N, HISTORY).")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Frames reduced side by side in this many worker processes [default: the "
                   "machine's cores, at most one per file; 1: one after another in this process].")
@config_options
@command_log("outdir")
def command(files: tuple[Path, ...], outdir: Path, bias: str | None, dark: str | None, flat: str | None,
            bpm: str | None, caldb_url: str | None, as_json: bool, workers: int | None,
            instrument: str | None,
            instrument_files: tuple[str, ...], config_files: tuple[str, ...],
            params: tuple[str, ...]) -> None:
    """Reduce raw FILES one by one with the recipe of their frame type, as `ccdflow night` does.

    Calibrations are the files given (--bias, --dark, --flat, --bpm) and, for the others, the
    caldb's best; a file the caldb knows is pinned, so it passes the same gates. Products carry
    the night's provenance cards (raw and calibration names, SHA-256, caldb ids, why each was
    chosen) and are recorded in the caldb's ledger. One file that cannot be reduced is reported
    with its reason; the others are still reduced.

    \b
    Examples:
      ccdflow reduce raw/sci_001.fits --out out --caldb caldb.sqlite
      ccdflow reduce raw/sci_*.fits --out out --bias mb.fits --dark md.fits --flat mf_V.fits
      ccdflow reduce raw/sci_001.fits --out out --caldb caldb.sqlite -p cosmicray.skip=true
      ccdflow reduce raw/sci_*.fits --out out --caldb caldb.sqlite --workers 1

    \b
    Exit status:
      0    every frame reduced
      1    some frames failed (the rest are written)
      2    configuration error (nothing was done)
      3    caldb unusable, disk full, OUT in use by another run (one line says why)
    """
    from ccdflow.cli.caldb_options import open_db
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.engine.instrument_files import forced_instrument, manager_with_files
    from ccdflow.pipeline.outlock import lock_outdir
    from ccdflow.pipeline.single import Setup

    root = click.get_current_context().find_root()
    manager = manager_with_files(instrument_files, (root.obj or {}).get("strict_plugins") or None)
    forced = forced_instrument(manager, instrument)
    build(manager, instrument=forced, config_files=config_files, params=params)  # exit 2 now
    db = None if caldb_url is None else open_db(caldb_url, write=True)
    given = {k: v for k, v in (("bias", bias), ("dark", dark), ("flat", flat), ("bpm", bpm)) if v}
    setup = Setup(manager, forced, tuple(config_files), tuple(params), db, dict(given))
    outdir.mkdir(parents=True, exist_ok=True)
    with signals_interrupt() as check_signals, lock_outdir(outdir.resolve(), "reduce"):
        entries = reduce_files(setup, files, outdir.resolve(), as_json, check_signals, workers)
    failed = [e for e in entries if e["status"] == "failed"]
    if as_json:
        click.echo(json.dumps({"products": entries, "reduced": len(entries) - len(failed),
                               "failed": len(failed), "caldb": None if db is None else db.display_url},
                              indent=2, default=str))
    else:
        _print_summary(entries)
    if failed:
        click.get_current_context().exit(EXIT_FAILURES)


def reduce_files(setup: Any, files: tuple[Path, ...], outdir: Path, quiet: bool,
                 check_signals: Any, workers: int | None = None) -> list[dict[str, Any]]:
    """One entry per file (as the night report's science entries): reduced, or failed with the
    error's name and reason; only a caldb lost or a full disk stops the run. With more than one
    worker, frames are reduced in worker processes (:mod:`ccdflow.pipeline.single_workers`)
    and the entries, log lines and ledger rows are the same, in the same order."""
    from ccdflow.framework.engine.errors import CcdflowError
    from ccdflow.framework.headers.scan import discover_fits_files
    from ccdflow.pipeline.plan import plan_products
    from ccdflow.pipeline.single import meta_of
    from ccdflow.pipeline.single_workers import can_fork, default_workers
    from ccdflow.pipeline.tasks import failed

    paths, problems = discover_fits_files(files)
    entries = [_failed({"raw": p, "status": "failed", "error": "UnprocessableInputError",
                        "reason": r.removeprefix(f"{p}: ")}, quiet) for p, r in problems]
    metas = []
    for path in paths:
        start = time.perf_counter()
        try:
            metas.append(meta_of(path, setup.manager, setup.instrument))
        except CcdflowError as exc:
            entries.append(_failed(failed({"raw": path}, exc, start), quiet))
    planned = list(plan_products(metas, None))
    n = default_workers(len(planned)) if workers is None else min(workers, len(planned))
    run = _in_workers if n > 1 and can_fork() else _in_process
    return entries + run(setup, planned, outdir, quiet, check_signals, n)


def _in_process(setup: Any, planned: list[tuple[Any, str]], outdir: Path, quiet: bool,
                check_signals: Any, _workers: int) -> list[dict[str, Any]]:
    """The frames one after another in this process."""
    from ccdflow.cli.master_inputs import progress_bar
    from ccdflow.pipeline.naming import inside
    from ccdflow.pipeline.single import frame_entry, reduce_one
    from ccdflow.pipeline.tasks import failed

    entries = []
    with progress_bar(not quiet, len(planned), "reduce") as advance:
        for meta, rel in planned:
            check_signals()
            start = time.perf_counter()
            entry = frame_entry(meta, rel)
            try:
                out = inside(outdir, outdir / "reduced" / rel)
                done = reduce_one(setup, meta.file, out)
                entries.append(_reduced(entry, out, done.sha256, done.product_id, done.calibrations,
                                        done.absent, start))
            except Exception as exc:  # one bad frame never stops the others
                entries.append(_failed(failed(entry, exc, start), quiet))
            advance(str(meta.path))
    return entries


def _in_workers(setup: Any, planned: list[tuple[Any, str]], outdir: Path, quiet: bool,
                check_signals: Any, workers: int) -> list[dict[str, Any]]:
    """The frames in ``workers`` processes: calibrations chosen here first (as a serial run
    chooses them), then each result taken in the files' order, recorded in the ledger and
    logged here."""
    from ccdflow.cli.master_inputs import progress_bar
    from ccdflow.pipeline.naming import inside
    from ccdflow.pipeline.single import choose_masters, frame_entry, record_product, used_masters
    from ccdflow.pipeline.single_workers import FramePool, Planned
    from ccdflow.pipeline.tasks import failed, is_fatal

    entries: list[dict[str, Any] | None] = []
    plan: list[Planned] = []
    for meta, rel in planned:  # an OUT name refused is the frame's failure, as in a serial run
        check_signals()
        start = time.perf_counter()
        entry = frame_entry(meta, rel)
        try:
            out = inside(outdir, outdir / "reduced" / rel)
        except Exception as exc:
            entries.append(failed(entry, exc, start))
            continue
        try:
            config = setup.config(meta.instrument)
            chosen: Any = choose_masters(setup, config, meta)
        except Exception as exc:  # raised in the worker after the read, where serial meets it
            if is_fatal(exc):  # the caldb is gone: no frame can be recorded
                raise
            chosen = exc
        plan.append(Planned(meta, rel, out, chosen))
        entries.append(None)
    with FramePool(setup, plan, workers) as pool, \
            progress_bar(not quiet, len(planned), "reduce") as advance:
        results = iter(zip(plan, pool.results(), strict=True))
        for i, early in enumerate(entries):
            check_signals()
            if early is not None:
                entries[i] = _failed(early, quiet)
                advance(str(early["raw"]))
                continue
            item, result = next(results)
            start = time.perf_counter()
            entry = frame_entry(item.meta, item.rel)
            try:
                if isinstance(result, Exception):  # raised out of the worker (a full disk)
                    raise result
                for record in result["log"]:
                    logging.getLogger(record.name).handle(record)
                if "failed" in result:
                    entries[i] = _failed(result["failed"], quiet)
                else:
                    assert not isinstance(item.chosen, Exception)  # the worker raised it: failed
                    masters, receipts, absent = item.chosen
                    meta = result["meta"]
                    product_id = record_product(setup, meta, item.out, result["sha256"], receipts,
                                                result["raw_sha256"], setup.config(meta.instrument))
                    entries[i] = _reduced(entry, item.out, result["sha256"], product_id,
                                          used_masters(masters), absent, start - result["seconds"])
            except Exception as exc:  # the ledger row refused; a fatal error is raised again
                entries[i] = _failed(failed(entry, exc, start), quiet)
            advance(str(item.meta.path))
    return [e for e in entries if e is not None]


def _reduced(entry: dict[str, Any], out: Path, sha256: str | None, product_id: int | None,
             calibrations: dict[str, Any], absent: dict[str, str], start: float) -> dict[str, Any]:
    """A frame reduced: its log line and entry."""
    log.info("reduced %s -> %s (%s)%s", entry["raw"], out,
             ", ".join(f"{k} {Path(c['path']).name}" for k, c in calibrations.items()),
             "".join(f"; no {k}: {why}" for k, why in absent.items()), extra=FILE_ONLY)
    return {**entry, "status": "reduced", "path": str(out), "sha256": sha256, "product_id": product_id,
            "calibrations": calibrations, "calibrations_absent": absent,
            "seconds": round(time.perf_counter() - start, 3)}


def _failed(entry: dict[str, Any], quiet: bool) -> dict[str, Any]:
    """A failure, told on stderr as it happens (the summary on stdout lists it again)."""
    log.warning("failed %s: %s: %s", entry["raw"], entry["error"], entry["reason"], extra=FILE_ONLY)
    if not quiet:
        err_console.print(f"[red]failed[/red] {escape(str(entry['raw']))}: {escape(entry['reason'])}",
                          highlight=False, soft_wrap=True)
    return entry


def _print_summary(entries: list[dict[str, Any]]) -> None:
    for e in entries:
        if e["status"] != "reduced":
            continue
        used = ", ".join(f"{k} {Path(c['path']).name}" + _id(c["caldb_id"])
                         for k, c in e["calibrations"].items()) or "no calibration"
        click.echo(f"reduced {e['raw']} -> {e['path']}: {used}")
        for kind, reason in e["calibrations_absent"].items():
            click.echo(f"  no {kind}: {reason}")
    for e in entries:
        if e["status"] == "failed":
            click.echo(f"failed {e['raw']}: {e['reason']}")
    n_failed = sum(e["status"] == "failed" for e in entries)
    click.echo(f"{len(entries) - n_failed} reduced, {n_failed} failed")


def _id(caldb_id: int | None) -> str:
    return "" if caldb_id is None else f" (caldb {caldb_id})"

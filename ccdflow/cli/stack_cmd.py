"""`ccdflow stack`: combine reduced exposures of one field; optionally write cosmic-ray masks."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from pathlib import Path

import click

from ccdflow.cli.command_log import command_log
from ccdflow.cli.master_cmd import ByteSize, progress_bar


@click.command("stack")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Stacked product to write (atomically); its folder gets ccdflow.log, appended to "
                   "by every run (INFO, DEBUG with -v).")
@click.option("--method", type=click.Choice(["median", "mean"]), default="median", show_default=True)
@click.option("--clip", type=click.Choice(["sigma", "minmax", "none"]), default="sigma", show_default=True)
@click.option("--sigma-low", type=float, default=3.0, show_default=True)
@click.option("--sigma-high", type=float, default=3.0, show_default=True)
@click.option("--match", type=click.Choice(["offset", "scale", "none"]), default="offset",
              show_default=True, help="Bring inputs to a common level first (sky offset, scale).")
@click.option("--cr-masks", is_flag=True,
              help="Write each input's rejected pixels to INPUT.crmask.fits (inputs are not changed).")
@click.option("--cr-dir", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for the cosmic-ray masks (default: next to each input).")
@click.option("--mix-filters", is_flag=True,
              help="Combine frames of different filters (refused by default: the result is of no band).")
@click.option("--memory-limit", type=ByteSize(), default=None, help="Bytes the combine may hold, e.g. 1GB.")
@click.option("--json", "as_json", is_flag=True, help="Print a machine-readable summary.")
@command_log("out", beside=True)
def command(files: tuple[str, ...], out: Path, method: str, clip: str, sigma_low: float,
            sigma_high: float, match: str, cr_masks: bool, cr_dir: Path | None, mix_filters: bool,
            memory_limit: int | None, as_json: bool) -> None:
    """Combine reduced FILES (ccdflow products sharing a pixel grid) with rejection.

    With --cr-masks, the pixels the rejection removed from each input are written as that
    input's cosmic-ray mask: a new file per input, never an edit of the input.
    """
    # Errors end as one line and the shared exit statuses in ccdflow.cli (the root group).
    _run(files, out, method, clip, sigma_low, sigma_high, match, cr_masks, cr_dir, memory_limit,
         as_json, mix_filters)


def _run(files, out, method, clip, sigma_low, sigma_high, match, cr_masks, cr_dir, memory_limit,
         as_json, mix_filters=False) -> None:
    from ccdflow.framework.builders.stack import stack_products, write_cr_masks
    from ccdflow.framework.io.fitswrite import write_ccd
    from ccdflow.pipeline.runlog import FILE_ONLY

    t0 = time.perf_counter()
    with progress_bar(not as_json, len(files), "stack") as advance:
        stacked = stack_products(files, method=method, clip=clip, sigma_low=sigma_low,
                                 sigma_high=sigma_high, match=match, memory_limit=memory_limit,
                                 keep_rejected=cr_masks, scratch_dir=out.resolve().parent,
                                 progress=advance, mix_filters=mix_filters)
    sha = write_ccd(stacked.ccd, out)
    masks: Sequence[Path | None] = write_cr_masks(stacked, out, cr_dir) if cr_masks else [None] * len(files)
    summary = {"path": str(out), "sha256": sha, "n_combined": len(files), "method": method, "clip": clip,
               "match": match, "inputs": [
                   {"path": p, "rejected_pixels": n, "cr_mask": str(m) if m else None}
                   for p, n, m in zip(stacked.paths, stacked.n_rejected, masks,
                                      strict=True)],
               "seconds": round(time.perf_counter() - t0, 3)}
    log = logging.getLogger("ccdflow.stack")  # the command's log; the console has it on stdout
    log.info("wrote %s from %d exposures (%s, clip %s, match %s) in %.1f s", out, len(files), method,
             clip, match, summary["seconds"], extra=FILE_ONLY)
    for entry in summary["inputs"]:
        log.info("%s: %d pixels rejected%s", entry["path"], entry["rejected_pixels"],
                 f", mask {entry['cr_mask']}" if entry["cr_mask"] else "", extra=FILE_ONLY)
    if as_json:
        click.echo(json.dumps(summary, indent=2))
        return
    click.echo(f"wrote {out} from {len(files)} exposures ({method}, clip {clip}, match {match})")
    for entry in summary["inputs"]:
        where = f" -> {entry['cr_mask']}" if entry["cr_mask"] else ""
        click.echo(f"  {entry['path']}: {entry['rejected_pixels']} pixels rejected{where}")

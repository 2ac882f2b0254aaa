"""`ccdflow master bpm`: a bad-pixel mask from a master dark and a master flat (or from raw darks
or flats, combined first), with the unstable-pixel test when a stack of frames is given."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from ccdflow.cli.command_log import command_log

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

from ccdflow.cli.master_inputs import (
    check_register_target,
    common_options,
    finish,
    load_calibrations,
    progress_bar,
    scan_inputs,
)


@click.command("bpm")
@click.argument("files", nargs=-1, type=click.Path(exists=True))
@common_options
@click.option("--flat", "flat_path", type=click.Path(exists=True, dir_okay=False),
              help="Master flat: dead/low pixels.")
@click.option("--hot-sigma", type=float, default=10.0, show_default=True,
              help="Hot: dark rate this many local noise sigma above its local background.")
@click.option("--hot-rate", type=float, default=None, help="Hot: dark rate above this (ADU/s).")
@click.option("--low-threshold", type=float, default=0.5, show_default=True,
              help="Low: flat below this fraction of its local level.")
@click.option("--min-frames", type=click.IntRange(min=1), default=3, show_default=True,
              help="Refuse a master dark or flat combined from fewer frames (NCOMBINE).")
@click.option("--unstable-factor", type=float, default=5.0, show_default=True,
              help="Unstable: temporal scatter this many times what the level predicts.")
@click.pass_context
@command_log("out", beside=True)
def bpm(ctx: click.Context, files: tuple[str, ...], *, out: Path, bias_path: str | None,
        dark_path: str | None, flat_path: str | None, caldb_url: str | None, register: bool,
        as_json: bool, instrument: str | None, instrument_files: tuple[str, ...], config_files: tuple,
        params: tuple, hot_sigma: float, hot_rate: float | None, low_threshold: float,
        unstable_factor: float, min_frames: int) -> None:
    """Bad-pixel mask from --dark MASTER (hot) and --flat MASTER (dead/low); raw dark or flat
    FILES, if given, add unstable pixels from their frame-to-frame scatter.

    Bits: 1 hot (against the dark's local background), 2 dead/low, 4 unstable; a pixel may
    carry several."""
    from ccdflow.framework.builders.badpixels import BpmThresholds, write_bpm
    from ccdflow.framework.builders.reduction import MasterRef
    from ccdflow.pipeline.master_build import bad_pixels, check_stack

    t0 = time.perf_counter()
    if dark_path is None and flat_path is None:
        raise click.UsageError("give --dark MASTER_DARK and/or --flat MASTER_FLAT")
    check_register_target(register, caldb_url, out)
    dark, flat = (None if p is None else MasterRef.load(k, p) for k, p in (("dark", dark_path),
                                                                          ("flat", flat_path)))
    thresholds = BpmThresholds(hot_sigma=hot_sigma, hot_rate=hot_rate, low_threshold=low_threshold,
                               unstable_factor=unstable_factor, min_frames=min_frames)
    manager: PluginManager | None = None
    if files:
        manager, config, metas = scan_inputs(ctx, files, instrument, instrument_files, config_files, params)
        cals, absent = load_calibrations(config, check_stack(metas),
                                         {"bias": bias_path, "dark": dark_path}, metas[0], caldb_url)
        with progress_bar(not as_json, len(metas), "stack") as advance:
            ccd = bad_pixels(dark, flat, thresholds, stack=metas, manager=manager, config=config,
                             cals=cals, absent=absent, scratch_dir=out.resolve().parent, progress=advance)
    else:
        ccd = bad_pixels(dark, flat, thresholds)
    mask, header = ccd.data, ccd.header
    sha = write_bpm(mask, header, out)
    summary = {"type": "bpm", "path": str(out), "sha256": sha, "n_combined": header.get("NCOMBINE", 0),
               "sources": {"dark": dark_path, "flat": flat_path},
               "stats": {k: header[k] for k in ("CF_NHOT", "CF_NLOW", "CF_NUNST", "CF_MASKF")}}
    finish(summary, out, register, caldb_url, manager, as_json, t0)

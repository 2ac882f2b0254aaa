"""`ccdflow master bias|dark|flat|bpm`: build a master calibration from raw frames.

Calibrations the recipe needs (a bias for darks, bias and dark for flats) come from
``--bias/--dark`` files or, failing that, from the caldb's best choice for the first input.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ccdflow.cli import ErrorsToExitGroup
from ccdflow.cli.command_log import command_log
from ccdflow.cli.process_tuning import collector_paused

if TYPE_CHECKING:
    from ccdflow.framework.builders.masters import Fallback
    from ccdflow.framework.numerics.combine import Clip, Method

from ccdflow.cli.master_inputs import (
    ByteSize,
    check_register_target,
    common_options,
    finish,
    load_calibrations,
    note,
    progress_bar,
    scan_inputs,
)


@click.group("master", cls=ErrorsToExitGroup)
def command() -> None:
    """Build master calibrations (bias, dark, flat) and bad-pixel masks from raw frames."""


def _combine_options(func: Callable) -> Callable:
    for option in reversed([
        click.option("--method", type=click.Choice(["median", "mean"]), default=None,
                     help="Combine method [default: the night's for this type and instrument, "
                          "`masters:` in its YAML: a sigma-clipped mean unless it says otherwise]."),
        click.option("--clip", type=click.Choice(["sigma", "minmax", "none"]), default=None,
                     help="Rejection before combining [default: the night's, sigma]."),
        click.option("--fallback", type=click.Choice(["refuse", "none", "minmax"]), default=None,
                     help="With fewer than 3 frames for --clip sigma: refuse, no rejection, or drop "
                          "each pixel's highest value (recorded as CF_FALLB) [default: the night's, "
                          "minmax]."),
        click.option("--memory-limit", type=ByteSize(), default=None,
                     help="Bytes the combine may hold, e.g. 1GB (default: the engine's)."),
    ]):
        func = option(func)
    return func


def _selectors(func: Callable) -> Callable:
    for option in reversed([
        click.option("--filter", "filter_name", metavar="NAME",
                     help="Use only frames of this filter (as `ccdflow inspect` shows it)."),
        click.option("--exptime", type=float, metavar="SECONDS",
                     help="Use only frames of this exposure time, within the tolerance the night "
                          "groups masters by (the type's caldb rule: 1 %% or 0.1 s by default)."),
        click.option("--temperature", type=float, metavar="C",
                     help="Use only frames at this detector temperature, within the type's caldb "
                          "rule's temperature_tolerance (darks: 2 C by default)."),
    ]):
        func = option(func)
    return func


def _master_command(kind: str) -> click.Command:
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
    @common_options
    @_selectors
    @_combine_options
    @click.pass_context
    @command_log("out", beside=True)
    def run(ctx: click.Context, /, files: tuple[str, ...], **opts: Any) -> None:
        with collector_paused():  # from the imports to the write: ccdflow.cli.process_tuning
            build_and_write(ctx, kind, files, **opts)

    run.__doc__ = (f"Combine the raw {kind} frames of FILES (directories are searched) into a master "
                   f"{kind}. Frames of other types are left out (stderr says how many); the "
                   f"selected frames must make one master, narrowed with --filter, --exptime "
                   f"and --temperature.")
    return command.command(kind)(run)


# The built-in types combined from raw frames, named here so that `ccdflow master --help` imports
# nothing heavy; a plugin's calibration type gets its masters from `ccdflow night`.
for _kind in ("bias", "dark", "flat"):
    _master_command(_kind)


def build_and_write(ctx: click.Context, kind: str, files: tuple[str, ...], *, out: Path,
                    bias_path: str | None, dark_path: str | None, caldb_url: str | None,
                    register: bool, as_json: bool, instrument: str | None, instrument_files: tuple[str, ...],
                    config_files: tuple, params: tuple, method: Method | None, clip: Clip | None,
                    fallback: Fallback | None, memory_limit: int | None, filter_name: str | None = None,
                    exptime: float | None = None, temperature: float | None = None) -> None:
    from ccdflow.framework.builders.master_selection import select_frames
    from ccdflow.framework.builders.masters import write_master
    from ccdflow.framework.builders.preprocess import warm_kernels
    from ccdflow.framework.calibrations import calibration_type
    from ccdflow.framework.io import cards
    from ccdflow.framework.numerics.memory import release_freed_memory
    from ccdflow.pipeline.master_build import combine

    release_freed_memory()  # one master, then exit: its peak memory is what the user sees
    t0 = time.perf_counter()
    check_register_target(register, caldb_url, out)
    manager, config, metas = scan_inputs(ctx, files, instrument, instrument_files, config_files, params,
                                         calibration_type(kind).frame_type)
    selection = select_frames(kind, metas, config.instrument.match_rule(kind, manager),
                              filter=filter_name, exptime=exptime, temperature=temperature)
    metas = selection.frames
    if selection.left_out:
        note(selection.note(kind))
    # the kernels load on a thread while the masters are read and hashed (their I/O and SHA-256
    # leave the interpreter free): 0.1 s of a 20-flat master's 2.7 s
    warm = threading.Thread(target=warm_kernels, name="ccdflow-warm-kernels", daemon=True)
    warm.start()
    cals, absent = load_calibrations(config, kind, {"bias": bias_path, "dark": dark_path}, metas[0],
                                     caldb_url)
    warm.join()
    with progress_bar(not as_json, len(metas), f"master {kind}") as advance:
        ccd = combine(kind, metas, manager, config, cals, absent, method=method, clip=clip,
                      fallback=fallback, memory_limit=memory_limit, scratch_dir=out.resolve().parent,
                      progress=advance)
    sha = write_master(ccd, out)
    summary = {"type": kind, "path": str(out), "sha256": sha, "instrument": config.instrument.name,
               "n_combined": len(metas), "method": ccd.header[cards.METH.keyword],
               "clip": ccd.header[cards.CLIP.keyword],
               "fallback": ccd.header.get(cards.FALLB.keyword),
               "inputs": [str(m.path) for m in metas], "left_out": dict(selection.left_out),
               "calibrations": {k: {"path": str(m.path), "sha256": m.checksum, "caldb_id": m.caldb_id}
                                for k, m in cals.items()},
               "calibrations_absent": absent,
               "stats": {c.keyword: ccd.header[c.keyword] for c in (
                   cards.MED, cards.NOISE, cards.LEVEL, cards.DKRT, cards.MASKF, cards.TEMP)
                   if c.keyword in ccd.header}}
    finish(summary, out, register, caldb_url, manager, as_json, t0)




def _add_bpm() -> None:
    """`master bpm` lives in its own module (it builds from masters, not by combining frames)."""
    from ccdflow.cli.master_bpm_cmd import bpm

    command.add_command(bpm)


_add_bpm()

"""`ccdflow master bias|dark|flat|bpm`: build a master calibration from raw frames.

Calibrations the recipe needs (a bias for darks, bias and dark for flats) come from
``--bias/--dark`` files or, failing that, from the caldb's best choice for the first input.
"""

from __future__ import annotations

import json
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ccdflow.cli import ErrorsToExitGroup
from ccdflow.cli.options import CALDB_ENV_VAR, config_options
from ccdflow.framework.engine.errors import UnprocessableInputError

if TYPE_CHECKING:
    from ccdflow.framework.engine.config import ResolvedConfig
    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.plugins import PluginManager

# caldb_options and config_cmd import astropy and pydantic at module level: taken inside the
# functions, so `ccdflow master --help` stays as fast as `ccdflow --help`.

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


def resolve_from_options(*args: Any) -> tuple[Any, Any]:
    from ccdflow.cli.config_cmd import resolve_from_options as resolve

    return resolve(*args)


def common_options(func: Callable) -> Callable:
    for option in reversed([
        click.option("--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                     help="Master file to write (atomically)."),
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


@click.group("master", cls=ErrorsToExitGroup)
def command() -> None:
    """Build master calibrations (bias, dark, flat) and bad-pixel masks from raw frames."""


def _combine_options(func: Callable) -> Callable:
    for option in reversed([
        click.option("--method", type=click.Choice(["median", "mean"]), default="median", show_default=True,
                     help="Combine method."),
        click.option("--clip", type=click.Choice(["sigma", "minmax", "none"]), default="sigma",
                     show_default=True, help="Rejection before combining."),
        click.option("--fallback", type=click.Choice(["refuse", "none", "minmax"]), default="refuse",
                     show_default=True,
                     help="With fewer than 3 frames for --clip sigma: refuse, no rejection, or drop "
                          "each pixel's highest value (recorded as CF_FALLB)."),
        click.option("--memory-limit", type=ByteSize(), default=None,
                     help="Bytes the combine may hold, e.g. 1GB (default: the engine's)."),
    ]):
        func = option(func)
    return func


def _master_command(kind: str) -> click.Command:
    @click.argument("files", nargs=-1, required=True, type=click.Path(exists=True))
    @common_options
    @_combine_options
    @click.pass_context
    def run(ctx: click.Context, files: tuple[str, ...], **opts: Any) -> None:
        build_and_write(ctx, kind, files, **opts)

    run.__doc__ = f"Combine raw {kind} FILES (directories are searched) into a master {kind}."
    return command.command(kind)(run)


for _kind in ("bias", "dark", "flat"):
    _master_command(_kind)


def scan_inputs(ctx: click.Context, files: tuple[str, ...], instrument: str | None,
                instrument_file: str | None, config_files: tuple, params: tuple
                ) -> tuple[PluginManager, ResolvedConfig, list[FrameMeta]]:
    """Frames and the configuration of their instrument; any unreadable file stops the build."""
    from ccdflow.framework.headers.scan import scan_paths

    manager, config = resolve_from_options(ctx, instrument, instrument_file, config_files, params)
    if instrument_file is not None:
        from ccdflow.framework.headers.header_map import normalise
        from ccdflow.framework.headers.scan import iter_fits_files
        from ccdflow.framework.io.fitsio import read_headers

        metas = [normalise(config.instrument, read_headers(f, complete=True), f)
                 for f in iter_fits_files(files)]
        return manager, config, metas
    metas, unknown = scan_paths(files, manager, instrument)
    if unknown:
        raise UnprocessableInputError("cannot use: " + "; ".join(f"{p}: {why}" for p, why in unknown))
    if not metas:
        raise UnprocessableInputError(f"no FITS files in {', '.join(files)}")
    names = sorted({m.instrument for m in metas})
    if len(names) > 1:
        raise UnprocessableInputError(f"inputs come from different instruments: {', '.join(names)}")
    if instrument is None and names[0] != config.instrument.name:
        manager, config = resolve_from_options(ctx, names[0], None, config_files, params)
    return manager, config, sorted(metas, key=lambda m: m.date_obs)


def load_calibrations(kinds: list[str], explicit: dict[str, str | None], meta: Any, config: Any,
                      caldb_url: str | None) -> dict[str, Any]:
    """MasterRef per needed type: the given file, else the caldb's best for ``meta``."""
    from ccdflow.framework.builders.reduction import MasterRef

    out, missing = {}, []
    for kind in kinds:
        if explicit.get(kind):
            out[kind] = MasterRef.load(kind, explicit[kind])
        else:
            missing.append(kind)
    if missing and caldb_url is None:
        raise UnprocessableInputError(
            f"the recipe needs a master {' and '.join(missing)}: give "
            + " ".join(f"--{k} FILE" for k in missing) + " or --caldb URL to choose from")
    if missing:
        from ccdflow.cli.caldb_options import open_db

        db = open_db(caldb_url)
        for kind in missing:
            record, _ = db.best(kind, meta, config.instrument.caldb[kind])
            out[kind] = MasterRef.load(kind, record["path"], record["id"], record["sha256"])
    return out


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


def build_and_write(ctx: click.Context, kind: str, files: tuple[str, ...], *, out: Path,
                    bias_path: str | None, dark_path: str | None, caldb_url: str | None,
                    register: bool, as_json: bool, instrument: str | None, instrument_file: str | None,
                    config_files: tuple, params: tuple, method: str, clip: str, fallback: str,
                    memory_limit: int | None) -> None:
    from ccdflow.framework.builders.masters import build_master, write_master
    from ccdflow.framework.calibrations import card_tag
    from ccdflow.framework.engine.recipe import needed_calibrations
    from ccdflow.framework.io import cards

    t0 = time.perf_counter()
    check_register_target(register, caldb_url, out)
    manager, config, metas = scan_inputs(ctx, files, instrument, instrument_file, config_files, params)
    cals = load_calibrations(needed_calibrations(config, kind), {"bias": bias_path, "dark": dark_path},
                             metas[0], config, caldb_url)
    with progress_bar(not as_json, len(metas), f"master {kind}") as advance:
        ccd = build_master(kind, metas, manager, config, {k: m.ccd for k, m in cals.items()},
                           method=method, clip=clip, fallback=fallback, memory_limit=memory_limit,
                           calibration_paths={k: str(m.path) for k, m in cals.items()},
                           scratch_dir=out.resolve().parent, progress=advance)
    for k, m in cals.items():  # the caldb id, when the caldb chose it
        if m.caldb_id is not None:
            cards.calibration_id(card_tag(k), k).put(ccd.header, m.caldb_id)
    sha = write_master(ccd, out)
    summary = {"type": kind, "path": str(out), "sha256": sha, "instrument": config.instrument.name,
               "n_combined": len(metas), "method": method, "clip": ccd.header[cards.CLIP.keyword],
               "fallback": ccd.header.get(cards.FALLB.keyword),
               "inputs": [str(m.path) for m in metas],
               "calibrations": {k: {"path": str(m.path), "sha256": m.checksum, "caldb_id": m.caldb_id}
                                for k, m in cals.items()},
               "stats": {c.keyword: ccd.header[c.keyword] for c in (
                   cards.MED, cards.NOISE, cards.LEVEL, cards.DKRT, cards.MASKF, cards.TEMP)
                   if c.keyword in ccd.header}}
    finish(summary, out, register, caldb_url, manager, as_json, t0)


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
    summary["seconds"] = round(time.perf_counter() - t0, 3)
    if as_json:
        click.echo(json.dumps(summary, indent=2, default=str))
        return
    stats = ", ".join(f"{k[3:].lower()} {v}" for k, v in summary.get("stats", {}).items())
    source = f"from {summary['n_combined']} frame(s)" if summary["type"] != "bpm" else "(bad-pixel mask)"
    click.echo(f"wrote {summary['type']} {out} {source}: {stats}")
    if summary.get("fallback"):
        click.echo(f"rejection fallback: {summary['fallback']}")
    if register:
        state = "added" if summary["caldb_new"] else "already present"
        click.echo(f"caldb: {state}, id {summary['caldb_id']}")


@command.command("bpm")
@click.argument("files", nargs=-1, type=click.Path(exists=True))
@common_options
@click.option("--flat", "flat_path", type=click.Path(exists=True, dir_okay=False),
              help="Master flat: dead/low pixels.")
@click.option("--hot-sigma", type=float, default=10.0, show_default=True,
              help="Hot: dark rate this many robust sigma above the median.")
@click.option("--hot-rate", type=float, default=None, help="Hot: dark rate above this (ADU/s).")
@click.option("--low-threshold", type=float, default=0.5, show_default=True,
              help="Low: flat below this fraction of its local level.")
@click.option("--unstable-factor", type=float, default=5.0, show_default=True,
              help="Unstable: temporal scatter this many times what the level predicts.")
@click.pass_context
def bpm(ctx: click.Context, files: tuple[str, ...], *, out: Path, bias_path: str | None,
        dark_path: str | None, flat_path: str | None, caldb_url: str | None, register: bool,
        as_json: bool, instrument: str | None, instrument_file: str | None, config_files: tuple,
        params: tuple, hot_sigma: float, hot_rate: float | None, low_threshold: float,
        unstable_factor: float) -> None:
    """Bad-pixel mask from --dark MASTER (hot) and --flat MASTER (dead/low); raw dark or flat
    FILES, if given, add unstable pixels from their frame-to-frame scatter.

    Bits: 1 hot, 2 dead/low, 4 unstable."""
    from ccdflow.framework.builders.badpixels import BpmThresholds, build_bpm, write_bpm
    from ccdflow.framework.builders.masters import preprocess_into
    from ccdflow.framework.engine.recipe import needed_calibrations
    from ccdflow.framework.io.fitsio import read_product
    from ccdflow.framework.io.spool import Spool

    t0 = time.perf_counter()
    if dark_path is None and flat_path is None:
        raise click.UsageError("give --dark MASTER_DARK and/or --flat MASTER_FLAT")
    check_register_target(register, caldb_url, out)
    masters = {k: read_product(p) for k, p in (("dark", dark_path), ("flat", flat_path)) if p}
    thresholds = BpmThresholds(hot_sigma=hot_sigma, hot_rate=hot_rate, low_threshold=low_threshold,
                               unstable_factor=unstable_factor)

    def make(stack: Any = None, paths: tuple = ()) -> tuple:
        d, f = masters.get("dark"), masters.get("flat")
        parts = {f"{k}{a}": None if m is None else getattr(m, a.strip("_") or "header")
                 for k, m in (("dark", d), ("flat", f)) for a in ("", "_data", "_mask")}
        return build_bpm(parts["dark"], parts["dark_data"], parts["flat"], parts["flat_data"],
                         dark_mask=parts["dark_mask"], flat_mask=parts["flat_mask"], dark_path=dark_path,
                         flat_path=flat_path, stack=stack, stack_paths=paths, thresholds=thresholds)

    manager: PluginManager | None = None
    if files:
        manager, config, metas = scan_inputs(ctx, files, instrument, instrument_file, config_files, params)
        kind = metas[0].frame_type
        if kind not in ("dark", "flat") or any(m.frame_type != kind for m in metas):
            raise UnprocessableInputError("the unstable-pixel stack must be all darks or all flats, got "
                                          + ", ".join(sorted({m.frame_type for m in metas})))
        cals = load_calibrations(needed_calibrations(config, kind), {"bias": bias_path, "dark": dark_path},
                                 metas[0], config, caldb_url)
        with Spool(len(metas), out.resolve().parent) as spool, \
                progress_bar(not as_json, len(metas), "stack") as advance:
            pre = preprocess_into(spool, kind, metas, manager, config,
                                  {k: m.ccd for k, m in cals.items()}, advance)
            mask, header = make((spool.frames, spool.masks, pre.scales or None), tuple(spool.paths))
    else:
        mask, header = make()
    sha = write_bpm(mask, header, out)
    summary = {"type": "bpm", "path": str(out), "sha256": sha, "n_combined": header.get("NCOMBINE", 0),
               "sources": {"dark": dark_path, "flat": flat_path},
               "stats": {k: header[k] for k in ("CF_NHOT", "CF_NLOW", "CF_NUNST", "CF_MASKF")}}
    finish(summary, out, register, caldb_url, manager, as_json, t0)

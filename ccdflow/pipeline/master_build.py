"""One master from files given by hand: what `ccdflow master` and ``ccdflow.build_master`` share
(the night builds its masters with :func:`~ccdflow.pipeline.tasks.master_task`, on the same
engine: :func:`ccdflow.framework.builders.masters.build_master`).

Calibrations the inputs' recipe needs (a bias for darks, bias and dark for flats) are the ones
given (files, or from Python CCDData) or, failing that, the caldb's best for the first input,
under the instrument's ``calibrations:`` policy, as in a night.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from astropy.nddata import CCDData

from ccdflow.framework.builders.reduction import IN_MEMORY, MasterRef
from ccdflow.framework.engine.errors import MissingCalibrationError, UnprocessableInputError

if TYPE_CHECKING:
    from ccdflow.caldb.database import CalDB
    from ccdflow.framework.builders.badpixels import BpmThresholds
    from ccdflow.framework.builders.masters import Fallback
    from ccdflow.framework.engine.config import ResolvedConfig
    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.plugins import PluginManager
    from ccdflow.framework.numerics.combine import Clip, Method

log = logging.getLogger("ccdflow.master")


def scan_inputs(files: Sequence[str | Path], manager: PluginManager, instrument: str | None,
                config_files: Sequence[str], params: Sequence[str], *, frame_type: str | None = None,
                note: Callable[[str], None] | None = None) -> tuple[ResolvedConfig, list[FrameMeta]]:
    """The frames (by time) and the configuration of their instrument: that of the
    ``frame_type`` frames when there are any (a night's folder may hold another camera's frames
    of other types), which must be one. A file named in ``files`` that cannot be used stops the
    build; one found in a folder given is left out, and ``note`` (default: a log warning) says
    how many with the first one's reason."""
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.headers.scan import scan_paths

    # a bad parameter or config file is an error before any file is read
    config = build(manager, instrument=instrument, config_files=config_files, params=params)
    metas, unknown = scan_paths(files, manager, instrument)
    named = [why for path, why in unknown if path in set(map(str, files))]
    if named or (unknown and not metas):
        shown = named or [why for _, why in unknown]
        more = f" (and {len(shown) - 3} more)" if len(shown) > 3 else ""
        raise UnprocessableInputError("cannot use: " + "; ".join(shown[:3]) + more)
    if unknown:
        (note or log.warning)(f"left out {len(unknown)} file(s) that cannot be used, e.g. {unknown[0][1]}")
    if not metas:
        raise UnprocessableInputError(f"no FITS files in {', '.join(map(str, files))}")
    of_type = [m for m in metas if m.frame_type == frame_type]
    names = sorted({m.instrument for m in of_type or metas})
    if len(names) > 1:
        what = f"{frame_type} frames" if of_type else "inputs"
        raise UnprocessableInputError(f"{what} come from different instruments: {', '.join(names)}")
    if names[0] != config.instrument.name:
        config = build(manager, instrument=names[0], config_files=config_files, params=params)
    return config, sorted(metas, key=lambda m: m.date_obs)


def load_calibrations(config: ResolvedConfig, frame_type: str,
                      explicit: Mapping[str, str | Path | CCDData | None], meta: FrameMeta,
                      open_db: Callable[[], CalDB] | None) -> tuple[dict[str, MasterRef], dict[str, str]]:
    """MasterRef per calibration the inputs' recipe looks for (the one given, else the caldb's
    best for ``meta``; ``open_db`` None: no caldb), and why each other one is absent, under the
    instrument's ``calibrations:`` policy (a missing required one is an error saying how to give
    it, or how to declare it optional)."""
    from ccdflow.framework.engine.calibration_policy import choose
    from ccdflow.framework.engine.recipe import calibration_needs

    dbs: list[CalDB] = []
    needs = calibration_needs(config, frame_type)
    # the files given are read and hashed side by side (I/O and SHA-256 leave the GIL free):
    # a flat's bias and dark, 0.2 -> 0.1 s; each is still taken (or its error raised) in turn
    files = {k: v for k, v in explicit.items() if k in needs.wanted and isinstance(v, str | Path) and v}
    pool = ThreadPoolExecutor(max(1, len(files)))
    loading = {k: pool.submit(MasterRef.load, k, v) for k, v in files.items()}
    pool.shutdown(wait=False)

    def find(kind: str) -> MasterRef:
        given = explicit.get(kind)
        if isinstance(given, CCDData):
            return MasterRef.from_ccd(kind, given)
        if kind in loading:
            return loading[kind].result()
        if given:
            return MasterRef.load(kind, given)
        if open_db is None:
            option = f"--{kind} FILE or " if kind in explicit else ""
            raise MissingCalibrationError(f"the recipe needs a master {kind}: give {option}--caldb URL "
                                          "to choose from")
        if not dbs:
            dbs.append(open_db())
        record, _ = dbs[0].best(kind, meta, config.instrument.match_rule(kind))
        return MasterRef.load(kind, record["path"], record["id"], record["sha256"])

    try:
        return choose(needs, find, config)
    finally:
        for future in loading.values():  # an error raised first: the others' reads end unused
            future.cancel()


def combine(kind: str, metas: Sequence[FrameMeta], manager: PluginManager, config: ResolvedConfig,
            cals: Mapping[str, MasterRef], absent: Mapping[str, str], *, method: Method | None = None,
            clip: Clip | None = None, fallback: Fallback | None = None, memory_limit: int | None = None,
            scratch_dir: str | Path | None = None,
            progress: Callable[[str], None] | None = None) -> CCDData:
    """The master, with the night's settings for the type and instrument (``masters:`` in its
    YAML), an argument overriding one of them; every calibration used is recorded with its
    path (``in-memory`` for one given in memory), SHA-256 and caldb id."""
    from ccdflow.framework.builders.masters import build_master
    from ccdflow.framework.io.provenance import stamp_calibration

    settings = config.instrument.master_settings(kind, manager)
    options = settings.combine
    ccd = build_master(kind, metas, manager, config, {k: m.ccd for k, m in cals.items()},
                       method=method or options["method"], clip=clip or options["clip"],
                       fallback=fallback or options["fallback"], memory_limit=memory_limit,
                       sigma_low=options["sigma_low"], sigma_high=options["sigma_high"],
                       warn_below=settings.warn_below, min_frames=settings.min_frames,
                       calibration_paths={k: f for k, m in cals.items() if (f := _file(m))},
                       calibration_checksums={k: m.checksum for k, m in cals.items()},
                       scratch_dir=scratch_dir, progress=progress, absent=absent)
    for k, m in cals.items():  # the checksum read, and the caldb id when the caldb chose it
        stamp_calibration(ccd.header, k, m.path, m.checksum, m.caldb_id)
    return ccd


def bad_pixels(dark: MasterRef | None, flat: MasterRef | None, thresholds: BpmThresholds, *,
               stack: Sequence[FrameMeta] = (), manager: PluginManager | None = None,
               config: ResolvedConfig | None = None, cals: Mapping[str, MasterRef] | None = None,
               absent: Mapping[str, str] | None = None, scratch_dir: str | Path | None = None,
               progress: Callable[[str], None] | None = None) -> CCDData:
    """A bad-pixel mask from a master dark (hot pixels) and/or flat (dead/low); raw darks or flats
    in ``stack`` (preprocessed with ``cals`` by their recipe) add unstable pixels from their
    frame-to-frame scatter. The mask's bits are the data (uint8) of the CCDData returned."""
    from ccdflow.framework.builders.badpixels import build_bpm
    from ccdflow.framework.builders.masters import preprocess_into
    from ccdflow.framework.io.provenance import stamp_calibration
    from ccdflow.framework.io.spool import Spool

    def make(pixels: Any = None, paths: Sequence[str] = ()) -> tuple[Any, Any]:
        d, f = (None if m is None else m.ccd for m in (dark, flat))
        return build_bpm(None if d is None else d.header, None if d is None else d.data,
                         None if f is None else f.header, None if f is None else f.data,
                         dark_mask=None if d is None else d.mask, flat_mask=None if f is None else f.mask,
                         dark_path=_file(dark), flat_path=_file(flat), stack=pixels,
                         stack_paths=paths, thresholds=thresholds)

    if not stack:
        mask, header = make()
    else:
        kind = check_stack(stack)
        assert manager is not None and config is not None, "a stack is preprocessed with its config"
        with Spool(len(stack), scratch_dir) as spool:
            pre = preprocess_into(spool, kind, stack, manager, config,
                                  {k: m.ccd for k, m in (cals or {}).items()}, progress, absent=absent)
            mask, header = make((spool.frames, spool.masks, pre.scales or None), tuple(spool.paths))
    for kind, ref in (("dark", dark), ("flat", flat)):
        if ref is not None:  # in memory too: its pixels' checksum
            stamp_calibration(header, kind, ref.path, ref.checksum, ref.caldb_id)
    return CCDData(mask, unit="adu", header=header)


def check_stack(stack: Sequence[FrameMeta]) -> str:
    """The frame type of an unstable-pixel stack: all darks or all flats (what the bpm type is made
    from: hot pixels from darks, low ones from flats)."""
    kind = stack[0].frame_type
    if kind not in ("dark", "flat") or any(m.frame_type != kind for m in stack):
        raise UnprocessableInputError("the unstable-pixel stack must be all darks or all flats, got "
                                      + ", ".join(sorted({m.frame_type for m in stack})))
    return kind


def _file(ref: MasterRef | None) -> str | None:
    return None if ref is None or str(ref.path) == IN_MEMORY else str(ref.path)

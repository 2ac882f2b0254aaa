"""``ccdflow.build_master``: a master calibration from raw frames, as `ccdflow master` builds it."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccdflow.api.inputs import Instrument, given_calibrations, instrument_setup, opened, param_strings

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ccdflow.api.caldb import CalDB
    from ccdflow.framework.builders.masters import Fallback
    from ccdflow.framework.numerics.combine import Clip, Method
    from ccdflow.pipeline.single import Given


def build_master(
    kind: str,
    files: str | Path | Iterable[str | Path] = (),
    *,
    bias: Given | None = None,
    dark: Given | None = None,
    flat: Given | None = None,
    calibrations: Mapping[str, Given] | None = None,
    method: Method | None = None,
    clip: Clip | None = None,
    fallback: Fallback | None = None,
    memory_limit: int | None = None,
    thresholds: Mapping[str, Any] | None = None,
    instrument: Instrument | None = None,
    caldb: CalDB | str | Path | None = None,
    params: Mapping[str, Any] | None = None,
    out: str | Path | None = None,
) -> CCDData:
    """Combine raw ``files`` (a folder, a file or a list of them) into a master of ``kind``
    (``bias``, ``dark``, ``flat`` or a plugin's type such as ``fringe``) with the engine and the
    settings of `ccdflow master` and `ccdflow night` (``masters:`` in the instrument's YAML;
    ``method``, ``clip``, ``fallback`` override them).

    The inputs' recipe takes the calibrations given (files or CCDData: a bias for darks, bias and
    dark for flats; ``calibrations`` for others), else the caldb's best. ``kind="bpm"`` builds a
    bad-pixel mask from ``dark`` and/or ``flat`` masters instead (``files``: raw darks or flats
    for the unstable-pixel test; ``thresholds``: hot_sigma, hot_rate, low_threshold,
    unstable_factor, min_frames as `ccdflow master bpm` has them), its bits as the data.
    Nothing is written unless ``out`` names a file (never one the caldb has registered).
    """
    from ccdflow.framework.builders.badpixels import BpmThresholds, write_bpm
    from ccdflow.framework.builders.masters import write_master
    from ccdflow.framework.engine.errors import ConfigError
    from ccdflow.framework.engine.recipe import calibration_needs
    from ccdflow.pipeline.immutable import refuse_registered
    from ccdflow.pipeline.master_build import bad_pixels, check_stack, combine, load_calibrations, scan_inputs
    from ccdflow.pipeline.single import Setup

    paths = [files] if isinstance(files, str | Path) else list(files)
    manager, forced, _ = instrument_setup(instrument)
    given = given_calibrations(manager, calibrations, bias=bias, dark=dark, flat=flat)
    with opened(caldb) as db:
        if out is not None:
            refuse_registered(Path(out), None if db is None else db.url)
        setup = Setup(manager, forced, params=param_strings(params), db=db, given=given)
        opener = None if db is None else (lambda: db)  # calibrations not given: the caldb's best
        if kind == "bpm":
            dark_ref, flat_ref = (setup.master(k) if k in given else None for k in ("dark", "flat"))
            known = set(BpmThresholds.__dataclass_fields__)
            if set(thresholds or {}) - known:
                raise ConfigError(f"thresholds: unknown {', '.join(sorted(set(thresholds or {}) - known))}; "
                                  f"known: {', '.join(sorted(known))}")
            limits = BpmThresholds(**(thresholds or {}))
            if not paths:
                ccd = bad_pixels(dark_ref, flat_ref, limits)
            else:  # the unstable-pixel stack, preprocessed with its recipe's calibrations
                config, metas = scan_inputs(paths, manager, forced, (), setup.params)
                cals, absent = load_calibrations(config, check_stack(metas), {"bias": bias, "dark": dark},
                                                 metas[0], opener)
                ccd = bad_pixels(dark_ref, flat_ref, limits, stack=metas, manager=manager,
                                 config=config, cals=cals, absent=absent)
            if out is not None:
                write_bpm(ccd.data, ccd.header, out)
            return ccd
        config, metas = scan_inputs(paths, manager, forced, (), setup.params)
        unused = sorted(set(given) - set(calibration_needs(config, metas[0].frame_type).wanted))
        if unused:  # never dropped in silence
            raise ConfigError(f"the {metas[0].frame_type} recipe of instrument {config.instrument.name!r} "
                              f"uses no {', '.join(unused)}: not given to a {kind} master")
        cals, absent = load_calibrations(config, metas[0].frame_type, given, metas[0], opener)
        ccd = combine(kind, metas, manager, config, cals, absent, method=method, clip=clip,
                      fallback=fallback, memory_limit=memory_limit,
                      scratch_dir=None if out is None else Path(out).resolve().parent)
    if out is not None:
        write_master(ccd, out)
    return ccd

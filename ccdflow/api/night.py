"""``ccdflow.run_night``: a whole night, as `ccdflow night` runs it, from Python."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccdflow.api.inputs import param_strings

if TYPE_CHECKING:
    from ccdflow.api.caldb import CalDB
    from ccdflow.pipeline.night import NightResult


def run_night(
    rawdir: str | Path,
    out: str | Path,
    *,
    caldb: CalDB | str | Path | None = None,
    instrument: str | None = None,
    instrument_config: Sequence[str | Path] = (),
    config: Sequence[str | Path] = (),
    params: Mapping[str, Any] | None = None,
    workers: int | None = None,
    scheduler: str | None = None,
    force: bool = False,
    redo_stale: bool = False,
    caldb_as_of: datetime | None = None,
) -> NightResult:
    """Reduce a night as `ccdflow night RAWDIR --out OUT` does: scan, build and register masters,
    reduce every science frame with the caldb's best calibrations, and write the report
    (``OUT/report.html``, ``report.json``). Returns the run's account: ``result.science`` and
    ``result.masters`` (one entry per frame or master, with ``status`` and, for a failure,
    ``reason``), ``result.failed``, ``result.warnings``, ``result.counts()``.

    ``caldb``: a ``ccdflow.CalDB``, URL or SQLite path (created if needed), else $CCDFLOW_CALDB,
    else the default file, as the command. ``workers``: 1 runs in this process; more, or None
    (one per core, as the command), on a Dask LocalCluster; ``scheduler`` an existing Dask
    cluster. The other arguments are the command's options of the same names
    (``params`` as ``-p``: ``{"overscan.method": "median"}``).
    """
    from ccdflow.api.caldb import CalDB
    from ccdflow.pipeline.executor import make_executor
    from ccdflow.pipeline.night import require_fits_files
    from ccdflow.pipeline.night import run_night as run
    from ccdflow.pipeline.outlock import lock_outdir
    from ccdflow.pipeline.report import write_report
    from ccdflow.pipeline.spec import environment, forget_environments, make_spec

    require_fits_files(rawdir)
    url = caldb.db.url if isinstance(caldb, CalDB) else caldb
    spec = make_spec(out, url, instrument, tuple(map(str, instrument_config)), tuple(map(str, config)),
                     param_strings(params), force, caldb_as_of)
    try:
        with lock_outdir(Path(spec.outdir), "night"), make_executor(workers, scheduler) as executor:
            result = run(rawdir, spec, executor, redo_stale=redo_stale)
            write_report(result, environment(spec).db)
    finally:
        forget_environments()  # closes the caldb connections this run opened
    return result

"""A tiny simulated night, reduced by the real nightly pipeline into a temporary OUT and caldb.

For tests that need real masters (a step that applies a calibration, a wrapper that reads
provenance, a new calibration type next to the built-in ones) without building them by hand.
64 x 64 pixels, one filter, a handful of frames: a couple of seconds, most of it the first
call of the cosmic-ray detector.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ccdflow.pipeline.night import NightResult
    from ccdflow.simulator import SimulatedNight, SimulationSpec

#: The small night: 3 bias, 3 darks of 60 s (a bad-pixel mask needs masters of >= 3 frames),
#: 3 V flats, 1 V science frame of 64 x 64 pixels.
TINY_NIGHT: dict[str, Any] = dict(
    shape=(64, 64), overscan=8, n_bias=3, n_dark=3, dark_exptimes=(60.0,),
    dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=1, science_exptime=60.0,
    n_stars=8, n_saturated_stars=1,
)


@dataclass
class NightRun:
    """Where a reduced simulated night is, and what it made. Shared between tests: read only."""

    raw_dir: Path
    out: Path
    caldb_url: str
    simulated: SimulatedNight  # the truth: bias level, gain, truth_dir with noiseless frames
    result: NightResult  # the pipeline's own account, as the report shows it
    masters: list[dict[str, Any]] = field(default_factory=list)
    products: list[Path] = field(default_factory=list)
    report: Path | None = None

    def master(self, kind: str) -> dict[str, Any]:
        """The one built master of ``kind`` (its path, caldb_id, sha256, inputs...)."""
        found = [m for m in self.masters if m["type"] == kind]
        if len(found) != 1:
            names = ", ".join(f"{m['type']}:{Path(m['path']).name}" for m in self.masters)
            raise LookupError(f"{len(found)} masters of type {kind!r} in {self.out}, expected one; "
                              f"built: {names or 'none'}")
        return found[0]

    def records(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The caldb's records (all types, or one), as ``ccdflow caldb list --json`` shows them."""
        from ccdflow.caldb import CalDB

        db = CalDB(self.caldb_url)
        try:
            return db.list(kind=kind)
        finally:
            db.close()


def simulated_spec(spec: SimulationSpec | None = None, **overrides: Any) -> SimulationSpec:
    """``spec`` as given, or :data:`TINY_NIGHT` with ``overrides`` (any SimulationSpec field)."""
    from ccdflow.simulator import SimulationSpec

    if spec is not None:
        return spec.model_copy(update=overrides) if overrides else spec
    return SimulationSpec(**{**TINY_NIGHT, **overrides})


def reduce_simulated_night(
    workdir: Path,
    spec: SimulationSpec,
    *,
    instrument: str | None = "generic",
    params: tuple[str, ...] = (),
    report: bool = False,
) -> NightRun:
    """Simulate ``spec`` under ``workdir``/simulated and run ``ccdflow night`` (serially, in this
    process) into ``workdir``/out with a SQLite caldb; ``params`` as ``-p step.key=value``."""
    from ccdflow.caldb import CalDB
    from ccdflow.pipeline.executor import SerialExecutor
    from ccdflow.pipeline.night import run_night
    from ccdflow.pipeline.spec import RunSpec, environment, forget_environments
    from ccdflow.simulator import simulate_night

    workdir = Path(workdir).resolve()
    simulated = simulate_night(workdir / "simulated", spec)
    out = workdir / "out"
    out.mkdir(parents=True, exist_ok=True)
    caldb_url = f"sqlite:///{out / 'caldb.sqlite'}"
    CalDB.create(caldb_url).close()
    run = RunSpec(outdir=str(out), caldb_url=caldb_url, instrument=instrument, params=tuple(params))
    report_path = None
    try:
        with SerialExecutor() as executor:
            result = run_night(simulated.raw_dir, run, executor)
        if report:
            from ccdflow.pipeline.report import write_report

            report_path = write_report(result, environment(run).db)["json"]
    finally:
        forget_environments()  # closes the caldb: the night's files can be removed afterwards
    return NightRun(
        raw_dir=simulated.raw_dir, out=out, caldb_url=run.caldb_url, simulated=simulated,
        result=result, report=report_path,
        masters=[m for m in result.masters if m["status"] == "built"],
        products=[Path(s["path"]) for s in result.science if s["status"] == "reduced"],
    )

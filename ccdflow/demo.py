"""`ccdflow demo`: simulate a night, run the nightly pipeline on it, check against the truth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccdflow.caldb import CalDB
from ccdflow.framework.builders.reduction import MasterRef
from ccdflow.framework.io.fitsio import read_product
from ccdflow.pipeline.executor import SerialExecutor
from ccdflow.pipeline.night import run_night
from ccdflow.pipeline.spec import RunSpec, forget_environments
from ccdflow.simulator import SimulationSpec, simulate_night

log = logging.getLogger("ccdflow.demo")


@dataclass
class DemoResult:
    """Where everything went, and how the reduced frames compare with the simulator's truth."""

    outdir: Path
    raw_dir: Path
    masters: list[dict] = field(default_factory=list)
    reduced: list[dict] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)
    caldb: str = ""
    seconds: dict[str, float] = field(default_factory=dict)


def run_demo(
    outdir: Path, spec: SimulationSpec, advance: Callable[[str], None] = lambda _: None
) -> DemoResult:
    """Simulate, then run the nightly pipeline on each simulated night in turn (later nights can
    use earlier nights' masters) and compare every reduced frame with the truth.

    ``advance`` is told each time one unit of work (simulation, a master, a frame) finishes.
    """
    t0 = time.perf_counter()
    night = simulate_night(outdir / "simulated", spec)
    result = DemoResult(outdir, night.raw_dir)
    result.seconds["simulate"] = time.perf_counter() - t0
    advance("simulated")

    db_path = outdir / "caldb.sqlite"
    CalDB.create(db_path).close()
    run = RunSpec(outdir=str(outdir), caldb_url=f"sqlite:///{db_path.resolve()}", instrument="generic")

    def progress(stage: str, done: int, total: int) -> None:
        if stage != "scan":
            advance(f"{stage} {done}/{total}")

    with SerialExecutor() as executor:
        for raw_dir in night.raw_dirs:
            nightly = run_night(raw_dir, run, executor, progress)
            result.caldb = nightly.caldb
            result.rejected += [(u["path"], u["reason"]) for u in nightly.unknown]
            for key in ("scan", "masters", "science"):
                result.seconds[key] = result.seconds.get(key, 0.0) + nightly.seconds[key]
            result.masters += [
                {"type": m["type"], "path": m["path"], "caldb_id": m.get("caldb_id"), "n": m["n"],
                 "median": m.get("median"), "noise": m.get("noise"), "status": m["status"]}
                for m in nightly.masters
            ]
            for entry in nightly.science:
                if entry["status"] == "failed":
                    result.rejected.append((entry["raw"], entry["reason"]))
                    continue
                result.reduced.append(_against_truth(entry, night, run.masters_dir))
    forget_environments()
    return result


def _against_truth(entry: dict, night, masters_dir: Path) -> dict:
    """The report entry of a reduced frame, with its residual against the simulator's truth."""
    ccd = read_product(entry["path"])
    cals = entry.get("calibrations", {})
    out = {"path": entry["path"], **{k: c["name"] for k, c in cals.items()}}
    flat = None
    if "flat" in cals:
        flat = MasterRef.load("flat", masters_dir / cals["flat"]["name"])
    in_adu = ccd.data if str(ccd.unit) == "adu" else ccd.data / np.float32(night.gain)
    out.update(compare_with_truth(in_adu, ccd.mask, night.truth_dir, Path(entry["raw"]).stem, night, flat))
    return out


def compare_with_truth(data, mask, truth_dir: Path, stem: str, night, flat: MasterRef | None) -> dict:
    """Residual of the reduced frame against the noiseless truth, in units of expected noise.

    Expected noise per pixel: Poisson of the sky, read noise, and the master flat's own
    error (its UNCERT extension) scaled by the signal.
    """
    from astropy.io import fits

    sky_file = truth_dir / f"sky_{stem}.fits"
    if not sky_file.exists():
        return {}
    sky_e = fits.getdata(sky_file).astype(np.float32)
    gain, rn_e = night.gain, night.read_noise_adu * night.gain
    good = np.ones(sky_e.shape, bool) if mask is None else ~np.asarray(mask, bool)
    for name in (f"cr_{stem}.fits", f"sat_{stem}.fits", "bpm.fits"):
        if (truth_dir / name).exists():
            good &= fits.getdata(truth_dir / name) == 0
    var = np.maximum(sky_e, 0) + rn_e**2
    if flat is not None and flat.ccd.uncertainty is not None:
        var = var + (sky_e * flat.ccd.uncertainty.array / np.maximum(flat.ccd.data, 1e-3)) ** 2
    resid = (data * gain - sky_e)[good]
    expected = np.sqrt(var[good])
    z = resid / expected
    return {
        "residual_median_e": float(np.median(resid)),
        "expected_noise_e": float(np.median(expected)),
        "residual_over_noise_std": float(1.4826 * np.median(np.abs(z - np.median(z)))),
    }

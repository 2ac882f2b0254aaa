"""`ccdflow demo`: simulate a night, build masters, reduce the science frames, check against truth."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccdflow.caldb import CalDB, NoCalibrationError, Receipt
from ccdflow.framework.config import build
from ccdflow.framework.fitsio import write_ccd
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.masters import build_master
from ccdflow.framework.plugins import get_plugin_manager
from ccdflow.framework.recipe import needed_calibrations, optional_calibrations
from ccdflow.framework.reduction import MasterRef, group_frames, observing_night, reduce_frame
from ccdflow.framework.scan import scan_paths
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


def _master_name(kind: str, meta: FrameMeta) -> str:
    """One file per night and group, e.g. ``2026-03-01_dark_120s_-20C.fits``."""
    night = observing_night(meta)
    if kind == "dark":
        return f"{night}_dark_{meta.exposure_time:g}s_{meta.temperature:+.0f}C.fits"
    if kind == "flat":
        return f"{night}_flat_{meta.filter}.fits"
    return f"{night}_bias.fits"


def run_demo(
    outdir: Path, spec: SimulationSpec, advance: Callable[[str], None] = lambda _: None
) -> DemoResult:
    """The whole demo; ``advance`` is told each time one unit of work finishes."""
    t0 = time.perf_counter()
    night = simulate_night(outdir / "simulated", spec)
    raw_files = sorted(p for d in night.raw_dirs for p in d.glob("*.fits"))
    result = DemoResult(outdir, night.raw_dir)
    result.seconds["simulate"] = time.perf_counter() - t0
    advance("simulated")

    manager = get_plugin_manager()
    config = build(manager, instrument="generic")
    frames, result.rejected = scan_paths(raw_files, manager)
    db = CalDB.create(outdir / "caldb.sqlite")
    result.caldb = db.display_url
    loaded: dict[int, MasterRef] = {}

    def choose(kind: str, meta: FrameMeta) -> tuple[MasterRef, Receipt]:
        record, receipt = db.best(kind, meta, config.instrument.caldb[kind])
        if record["id"] not in loaded:
            loaded[record["id"]] = MasterRef.load(kind, record["path"], record["id"], record["sha256"])
        return loaded[record["id"]], receipt

    def choose_all(frame_type: str, meta: FrameMeta) -> dict[str, tuple[MasterRef, Receipt]]:
        """Every calibration the recipe asks for; an optional one (bpm) may be absent."""
        optional = optional_calibrations(config, frame_type)
        chosen = {}
        for kind in needed_calibrations(config, frame_type):
            try:
                chosen[kind] = choose(kind, meta)
            except NoCalibrationError:
                if kind not in optional:
                    raise
        return chosen

    t1 = time.perf_counter()
    for kind in ("bias", "dark", "flat"):
        for metas in (g for g in group_frames(frames).values() if g[0].frame_type == kind):
            cals = {k: m for k, (m, _) in choose_all(kind, metas[0]).items()}
            ccd = build_master(kind, metas, manager, config, {k: m.ccd for k, m in cals.items()},
                               calibration_paths={k: str(m.path) for k, m in cals.items()})
            path = outdir / "masters" / _master_name(kind, metas[0])
            write_ccd(ccd, path)
            added = db.add(path, manager)
            result.masters.append({
                "type": kind, "path": str(path), "caldb_id": added.id, "n": len(metas),
                "median": ccd.header["CF_MED"], "noise": ccd.header["CF_NOISE"],
            })
            advance(f"master {path.name}")
    result.seconds["masters"] = time.perf_counter() - t1

    t2 = time.perf_counter()
    for meta in (f for f in frames if f.frame_type == "science"):
        out_path = outdir / "reduced" / Path(meta.path).name
        try:
            chosen = choose_all("science", meta)
        except NoCalibrationError as exc:
            result.rejected.append((str(meta.path), str(exc)))
            continue
        ccd, checksum = reduce_frame(meta, manager, config, {k: m for k, (m, _) in chosen.items()},
                                     out_path)
        db.record_product(out_path, meta, {k: r for k, (_, r) in chosen.items()},
                          sha256=checksum, raw_sha256=ccd.header["CF_RAWS"],
                          config_hash=config.config_hash())
        entry = {"path": str(out_path), **{k: m.path.name for k, (m, _) in chosen.items()}}
        flat = chosen.get("flat", (None, None))[0]
        in_adu = ccd.data if str(ccd.unit) == "adu" else ccd.data / np.float32(night.gain)
        entry.update(compare_with_truth(in_adu, ccd.mask, night.truth_dir, Path(meta.path).stem,
                                        night, flat))
        result.reduced.append(entry)
        advance(f"reduced {out_path.name}")
    result.seconds["science"] = time.perf_counter() - t2
    db.close()
    return result


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

"""simulate_night: write raw frames for one or more nights and the truth they were made from."""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ccdflow.simulator.amplifiers import amp_regions, data_x0, per_amp
from ccdflow.simulator.detector import BAD_COLUMN, DEAD, HOT, Detector, make_detector
from ccdflow.simulator.exposure import Exposure, NightModel, expose
from ccdflow.simulator.fringes import fringe_pattern
from ccdflow.simulator.optics import Optics, flat_field, make_optics
from ccdflow.simulator.readout import Readout
from ccdflow.simulator.schedule import SimFrame, plan_night
from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.sky import StarField, make_star_field
from ccdflow.simulator.spec import SimulationSpec, file_safe
from ccdflow.simulator.writer import check_no_strangers, write_raw, write_truth


@dataclass
class SimulatedNight:
    """Index of a simulated run: where the files are and the physical truth behind them.

    `raw_dir` is night 1's; `raw_dirs` lists every night's. Scalars are those of night 1
    (the bias level drifts a little from night to night; see `night_bias_levels`).
    """

    raw_dir: Path
    truth_dir: Path
    frames: list[SimFrame]
    bias_level: float  # ADU
    read_noise_adu: float
    gain: float  # e-/ADU
    dark_rate_at_ref: float  # e-/s/pixel, median over the data area
    ref_temperature: float  # C
    doubling_temperature: float  # C
    saturation: float  # ADU
    spec: SimulationSpec
    raw_dirs: list[Path] = field(default_factory=list)
    night_bias_levels: list[float] = field(default_factory=list)

    @property
    def read_noise_e(self) -> float:
        return self.read_noise_adu * self.gain

    def dark_rate_at(self, temperature: float) -> float:
        """Median dark current (e-/s) at `temperature`, by the spec's dark law."""
        return self.dark_rate_at_ref * self.spec.dark_factor(temperature)

    def select(self, frame_type: str, night: int | None = None) -> list[SimFrame]:
        return [f for f in self.frames
                if f.frame_type == frame_type and (night is None or f.night == night)]


def night_truth_dir(truth_dir: Path, night: int) -> Path:
    """Night 1's bias and flats sit in the truth root; later nights' in truth/night<k>/."""
    return truth_dir if night == 1 else truth_dir / f"night{night}"


def bias_levels(spec: SimulationSpec) -> list[float]:
    """Night 1 at `bias_level`, then a random walk of `bias_drift` ADU per night."""
    steps = rng_for(spec.seed, "bias drift").normal(0.0, spec.bias_drift, spec.nights - 1)
    return [round(spec.bias_level + s, 4) for s in np.concatenate([[0.0], np.cumsum(steps)])]


def _write_detector_truth(truth_dir: Path, detector: Detector, spec: SimulationSpec) -> None:
    write_truth(truth_dir / "dark_rate.fits", detector.dark_rate,
                "dark current at the reference temperature, data area", "electron/s")
    write_truth(truth_dir / "bpm.fits", detector.bpm,
                f"bad pixels: {HOT} hot, {DEAD} dead or low, {BAD_COLUMN} bad column", "")
    if detector.glow.any():
        note = ("amplifier glow at the reference temperature (included in dark_rate)"
                if spec.amp_glow_thermal else "amplifier glow at any temperature (not in dark_rate)")
        write_truth(truth_dir / "glow.fits", detector.glow, note, "electron/s")


def _write_frame_truth(truth_dir: Path, frame: SimFrame, exposure: Exposure,
                      charge: bool) -> None:
    if exposure.cosmics is not None:
        write_truth(truth_dir / f"cr_{frame.name}.fits", (exposure.cosmics > 0).astype(np.uint8),
                    "pixels hit by cosmic rays", "")
        if charge:
            write_truth(truth_dir / f"crq_{frame.name}.fits", exposure.cosmics,
                        "charge deposited by cosmic rays (after the flat)", "electron")
    if exposure.sky is not None and exposure.saturated is not None:  # science frames have both
        write_truth(truth_dir / f"sky_{frame.name}.fits", exposure.sky,
                    "noiseless sky + stars before the flat, data area", "electron")
        write_truth(truth_dir / f"sat_{frame.name}.fits", exposure.saturated,
                    "1 at full well, 2 received bleed charge", "")


def make_readout(spec: SimulationSpec, full_well: float) -> Readout:
    """The electronics of `spec`: scalars for one amplifier, maps for several."""
    several = spec.amplifiers > 1
    raw_shape = (spec.shape[0], spec.raw_width)
    return Readout(
        gain=spec.gain, read_noise_adu=spec.read_noise_adu, saturation=spec.saturation,
        full_well=full_well, x0=data_x0(spec),
        gain_map=per_amp(spec, "gain", spec.shape, raw=False) if several else None,
        noise_map=(per_amp(spec, "read_noise", raw_shape, raw=True)
                   / per_amp(spec, "gain", raw_shape, raw=True)) if several else None,
        nonlinearity=spec.nonlinearity)


def _default_workers() -> int:
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return max(1, min(8, cpus or 1))


def _simulate_one_night(model: NightModel, optics: Optics, planned: list[SimFrame], night: int,
                        levels: list[float], truth_dir: Path, workers: int) -> dict:
    """Write one night's truth calibrations and raw frames; return its truth.json entry."""
    spec = model.spec
    here = night_truth_dir(truth_dir, night)
    write_truth(here / "bias.fits", model.bias,
                "bias structure incl. overscan, without the per-frame offset", "adu")
    flat_files = {f: here / f"flat_{file_safe(f)}.fits" for f in spec.filters}
    for name, flat in model.flats.items():
        write_truth(flat_files[name], flat, "normalised flat field (median 1)", "")

    def run(frame: SimFrame) -> None:
        exposure = expose(frame, model)
        write_raw(frame, exposure.raw, spec)
        _write_frame_truth(truth_dir, frame, exposure, spec.cosmic_ray_charge_truth)

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(run, planned))
    return {
        "night": night, "bias_level_adu": levels[night - 1],
        "bias_file": str((here / "bias.fits").relative_to(truth_dir)),
        "flat_files": {f: str(path.relative_to(truth_dir)) for f, path in flat_files.items()},
        "dust": [vars(d) for d in optics.window_dust_on(night)],
    }


def simulate_night(outdir: Path | str, spec: SimulationSpec | None = None,
                   workers: int | None = None) -> SimulatedNight:
    """Simulate `spec.nights` nights into `outdir`; same spec and seed, same pixels.

    Frames are simulated on `workers` threads (numpy's generators release the GIL); each frame
    has its own random stream, so the pixels do not depend on the number of workers.
    """
    spec = spec or SimulationSpec()
    workers = workers or _default_workers()
    outdir = Path(outdir)
    truth_dir = outdir / "truth"
    raw_dirs = [outdir / f"night{k}" / "raw" for k in range(1, spec.nights + 1)]
    plans = [plan_night(spec, k, raw_dir) for k, raw_dir in enumerate(raw_dirs, start=1)]
    for raw_dir, planned in zip(raw_dirs, plans, strict=True):
        check_no_strangers(raw_dir, planned)  # before writing anything

    detector, optics, stars = make_detector(spec), make_optics(spec), make_star_field(spec)
    full_well = float(np.float32(spec.full_well))
    readout = make_readout(spec, full_well)
    levels = bias_levels(spec)
    _write_detector_truth(truth_dir, detector, spec)
    fringes = {f: fringe_pattern(spec, f) for f, strength in spec.fringe.items() if strength > 0}
    for name, pattern in fringes.items():
        write_truth(truth_dir / f"fringe_{file_safe(name)}.fits", pattern,
                    f"fringe pattern (RMS 1); a frame holds it times its truth's fringe_rms_e, "
                    f"{spec.fringe[name]} of its sky level", "")
    nights_json = []
    for night, planned in enumerate(plans, start=1):
        model = NightModel(spec=spec, detector=detector, bias=detector.bias(levels[night - 1]),
                           flats={f: flat_field(optics, detector, f, night) for f in spec.filters},
                           stars=stars, full_well=full_well, readout=readout,
                           fringes=fringes)
        entry = _simulate_one_night(model, optics, planned, night, levels, truth_dir, workers)
        nights_json.append({"raw_dir": str(raw_dirs[night - 1].relative_to(outdir)), **entry})

    result = SimulatedNight(
        raw_dir=raw_dirs[0], truth_dir=truth_dir, frames=[f for p in plans for f in p],
        bias_level=levels[0], read_noise_adu=spec.read_noise_adu, gain=spec.gain,
        dark_rate_at_ref=float(np.median(detector.dark_rate)),
        ref_temperature=spec.ref_temperature, doubling_temperature=spec.doubling_temperature,
        saturation=spec.saturation, spec=spec, raw_dirs=raw_dirs, night_bias_levels=levels)
    _write_truth_json(outdir, result, detector, stars, nights_json)
    return result


def _write_truth_json(outdir: Path, night: SimulatedNight, detector: Detector, stars: StarField,
                      nights_json: list[dict]) -> None:
    spec = night.spec
    truth = {
        "spec": spec.model_dump(mode="json"),
        "gain_e_per_adu": night.gain,
        "read_noise_e": spec.read_noise,
        "read_noise_adu": night.read_noise_adu,
        "bias_level_adu": night.bias_level,
        "saturation_adu": night.saturation,
        "full_well_e": spec.full_well,
        "dark": {
            "model": "rate(T) = rate_ref * 2**((T - T_ref) / T_double), per pixel",
            "rate_ref_median_e_per_s": night.dark_rate_at_ref,
            "ref_temperature_c": night.ref_temperature,
            "doubling_temperature_c": night.doubling_temperature,
            "n_hot_pixels": int(((detector.bpm & HOT) > 0).sum()),
        },
        "dark_law": _dark_law_truth(spec),
        "amp_glow": {"peak_e_per_s_at_ref": spec.amp_glow, "scale_px": spec.amp_glow_scale,
                     "file": "glow.fits" if detector.glow.any() else None,
                     "thermal": spec.amp_glow_thermal,
                     "note": "thermal: part of dark_rate, follows the dark law; else added "
                             "at the same rate whatever the temperature"},
        "nonlinearity": {"read_adu": "s + sum k_i s**i, i >= 2, s the true level-free ADU",
                         "k": list(spec.nonlinearity)},
        "amplifiers": [_amp_truth(a) for a in amp_regions(spec)],
        "cosmic_ray_energy_e": list(spec.cosmic_ray_energy),
        "bpm_bits": {str(HOT): "hot", str(DEAD): "dead or low", str(BAD_COLUMN): "bad column"},
        "bad_columns": {
            "hot": {"x": detector.hot_column[0], "rows": [0, detector.hot_column[1]]},
            "dead": {"x": detector.dead_column[0], "rows": [detector.dead_column[1],
                                                            spec.shape[0] - 1]},
            "indexing": "0-based, rows inclusive",
        },
        "stars": {"y": stars.y.round(3).tolist(), "x": stars.x.round(3).tolist(),
                  "rate_e_per_s": stars.rate.round(3).tolist(),
                  "saturating": stars.saturating.tolist(),
                  "note": "0-based positions before each frame's dither; rates before colour"},
        "nights": nights_json,
        "frames": [f.summary(outdir) for f in night.frames],
    }
    (night.truth_dir / "truth.json").write_text(json.dumps(truth, indent=1) + "\n")


def _dark_law_truth(spec: SimulationSpec) -> dict:
    if spec.dark_law == "doubling":
        return {"law": "doubling", "doubling_temperature_c": spec.doubling_temperature}
    return {"law": "arrhenius", "band_gap_ev": spec.band_gap,
            "model": "rate(T) = rate_ref * (T/T_ref)**3 * exp(-Eg/2k * (1/T - 1/T_ref)), kelvin"}


def _amp_truth(amp) -> dict:
    return {"name": amp.name, "data": amp.section(amp.data_cols),
            "overscan": amp.section(amp.overscan_cols), "gain_e_per_adu": amp.gain,
            "read_noise_e": amp.read_noise, "bias_offset_adu": amp.bias_offset,
            "corner_yx": list(amp.corner), "indexing": "sections 1-based raw pixels (FITS)"}

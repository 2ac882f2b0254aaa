"""A reduced night against the simulator's truth: the figures an instrument scientist signs.

Reads only FITS files and the night's report.json (astropy and numpy, no reduction code), so
it judges whatever reduction wrote them:

- science: pulls (product - truth) / UNCERT and the mean additive residual in standard errors,
  per exposure time, and the mean residual where the amplifier glows;
- masters: RMS of (master - truth) over RMS of the master's own error plane, for bias, dark
  and flat, and how many dark masters each (exposure time, set point) was split into;
- bad-pixel mask: false flags among good pixels, recall of hot and of dead pixels;
- cosmic rays: recall of hit pixels whose charge is above 10 times the pixel's noise without
  it, and of those beside a bad or saturated pixel.

Truth pixels judged: good ones only (no truth bad pixel, cosmic ray or saturation), and not
masked by the product for the science figures.
"""

from __future__ import annotations

import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from scipy import ndimage

from ccdflow.simulator.amplifiers import amp_regions
from ccdflow.simulator.detector import BAD_COLUMN, DEAD, HOT
from ccdflow.simulator.night import SimulatedNight
from ccdflow.simulator.row_noise import row_scatter, row_variance
from ccdflow.simulator.spec import file_safe

CR_SNR = 10.0  # a hit pixel counts when its charge is this many times its noise without it


def _ext(hdul: fits.HDUList, name: str) -> np.ndarray:
    """An image extension as float64; a product without it cannot be judged."""
    if name not in hdul:
        raise ValueError(f"{hdul.filename()}: no {name} extension to judge against the truth")
    return np.asarray(hdul[name].data, np.float64)


def _truth(sim: SimulatedNight, name: str) -> np.ndarray:
    return fits.getdata(sim.truth_dir / name)


def _frames_by_name(sim: SimulatedNight) -> dict[str, Any]:
    return {f.name: f for f in sim.frames}


def science_figures(sim: SimulatedNight, report: dict) -> dict[str, dict[str, float]]:
    """Per science exposure time: pull width (std and MAD-based), mean residual (e-) and its
    size in standard errors, glow-corner mean residual (e-), scatter of row-mean residuals
    over UNCERT's prediction, pixels used."""
    frames = _frames_by_name(sim)
    bpm = _truth(sim, "bpm.fits") != 0
    glow_file = sim.truth_dir / "glow.fits"
    glow = None
    if glow_file.exists():
        g = fits.getdata(glow_file)
        glow = g >= sim.spec.amp_glow * np.exp(-2.0)
    pulls: dict[float, list[np.ndarray]] = defaultdict(list)
    resid: dict[float, list[np.ndarray]] = defaultdict(list)
    glow_resid: dict[float, list[np.ndarray]] = defaultdict(list)
    row_ratio: dict[float, list[float]] = defaultdict(list)
    for entry in report["science"]:
        if entry.get("status") != "reduced":
            continue
        name = Path(entry["raw"]).stem
        frame = frames[name]
        with fits.open(entry["path"]) as hdul:
            sci, unc = _ext(hdul, "SCI"), _ext(hdul, "UNCERT")
            mask = hdul["MASK"].data if "MASK" in hdul else np.zeros(sci.shape, np.uint8)
            unit = str(hdul["SCI"].header.get("BUNIT", hdul[0].header.get("BUNIT", ""))).lower()
            shared = row_variance(hdul[0].header, Path(entry["path"]).parent.parent / "masters")
        if unit.startswith("adu"):
            sci, unc = sci * sim.gain, unc * sim.gain
        else:
            shared = shared * sim.gain**2
        truth = _truth(sim, f"sky_{name}.fits").astype(np.float64)
        good = (mask == 0) & ~bpm & (_truth(sim, f"cr_{name}.fits") == 0)
        good &= _truth(sim, f"sat_{name}.fits") == 0
        good &= np.isfinite(sci) & (unc > 0)
        r = sci - truth
        pulls[frame.exptime].append(r[good] / unc[good])
        resid[frame.exptime].append(r[good])
        if glow is not None:
            glow_resid[frame.exptime].append(r[good & glow])
        row_ratio[frame.exptime].append(row_scatter(r, unc, good, shared))
    out = {}
    for t in sorted(pulls):
        p, r = np.concatenate(pulls[t]), np.concatenate(resid[t])
        mad = 1.4826 * np.median(np.abs(p - np.median(p)))
        se = r.std() / np.sqrt(r.size)
        out[f"{t:g}s"] = {
            "pull_std": float(p.std()), "pull_mad": float(mad),
            "mean_residual_e": float(r.mean()), "mean_residual_se": float(r.mean() / se),
            "glow_mean_residual_e": float(np.concatenate(glow_resid[t]).mean())
            if glow_resid.get(t) else float("nan"),
            "row_scatter_ratio": float(np.mean(row_ratio[t])),
            "pixels": int(r.size), "frames": len(pulls[t])}
    return out


def _expected_bias(sim: SimulatedNight) -> np.ndarray:
    """Truth bias after each amplifier's per-row overscan level and the trim (ADU)."""
    bias = _truth(sim, "bias.fits").astype(np.float64)
    ny, nx = sim.spec.shape
    out = np.empty((ny, nx))
    for amp in amp_regions(sim.spec):
        level = bias[amp.rows, amp.overscan_cols].mean(axis=1)
        out[amp.area] = bias[amp.rows, amp.data_cols] - level[:, None]
    return out


def _dark_factor(sim: SimulatedNight, inputs: list[str]) -> float:
    frames = _frames_by_name(sim)
    temps = [frames[Path(p).stem].temperature for p in inputs]
    return float(np.mean([sim.spec.dark_factor(t) for t in temps]))


def _ratio(resid: np.ndarray, unc: np.ndarray) -> float:
    return float(np.sqrt(np.mean(resid**2)) / np.sqrt(np.mean(unc**2)))


def _unrecoverable(sim: SimulatedNight, inputs: list[str]) -> np.ndarray:
    """Pixels that cosmic rays hit in at least half of a master's inputs: no rejection can
    recover them (the hits are the majority; the master's UNCERT there is the hits' scatter,
    hundreds of ADU) and one such pixel of a 300 s dark moved the RMS ratio from 1.00 to 1.12."""
    maps = [f for p in inputs if (f := sim.truth_dir / f"cr_{Path(p).stem}.fits").is_file()]
    if not maps:
        return np.asarray(False)
    hits = sum((fits.getdata(f) != 0).astype(np.int16) for f in maps)
    return np.asarray(hits) * 2 >= len(inputs)


def master_figures(sim: SimulatedNight, report: dict) -> dict[str, Any]:
    """Residual RMS / error-plane RMS of each master type (worst master of the type), and the
    dark masters per (exposure time, set point)."""
    good = _truth(sim, "bpm.fits") == 0
    good &= ndimage.binary_dilation(~good, iterations=1) == 0  # neighbours of defects too
    ratios: dict[str, list[float]] = defaultdict(list)
    groups: dict[str, int] = defaultdict(int)
    set_points = sim.spec.dark_temperatures
    expected_bias = _expected_bias(sim)
    for m in report["masters"]:
        if m.get("status") not in ("built", "up to date", "exists") or m["type"] == "bpm":
            continue
        with fits.open(m["path"]) as hdul:
            if "UNCERT" not in hdul:  # a master without an error plane has no ratio
                continue
            sci, unc = _ext(hdul, "SCI"), _ext(hdul, "UNCERT")
            header = hdul[0].header.copy()
        exptime = float(header.get("EXPTIME", 0.0))
        if m["type"] == "bias":
            truth = expected_bias
        elif m["type"] == "dark":
            rate = _truth(sim, "dark_rate.fits").astype(np.float64)
            per_second = rate * _dark_factor(sim, m["inputs"])
            if sim.spec.amp_glow > 0 and not sim.spec.amp_glow_thermal:
                per_second = per_second + _truth(sim, "glow.fits")
            truth = per_second * exptime / sim.gain
            frames = _frames_by_name(sim)
            temp = np.mean([frames[Path(p).stem].temperature for p in m["inputs"]])
            point = min(set_points, key=lambda s: abs(s - temp))
            groups[f"{exptime:g}s {point:+g}C"] += 1
        elif m["type"] == "flat":
            filt = str(header.get("CF_FILT") or sim.spec.filters[0])
            truth = _truth(sim, f"flat_{filt}.fits").astype(np.float64)
            scale = np.median(sci[good])
            sci, unc = sci / scale, unc / scale
            truth = truth / np.median(truth[good])
        else:
            continue
        ok = good & np.isfinite(sci) & (unc > 0) & ~_unrecoverable(sim, m.get("inputs", []))
        ratios[m["type"]].append(_ratio((sci - truth)[ok], unc[ok]))
    return {"residual_over_error": {k: max(v, key=lambda r: abs(r - 1)) for k, v in ratios.items()},
            "all_ratios": dict(ratios), "dark_masters_per_group": dict(groups),
            "split_dark_groups": sum(1 for n in groups.values() if n > 1)}


def bpm_figures(sim: SimulatedNight, report: dict) -> dict[str, float]:
    """False flags among truly good pixels; recall of hot (pixels and column) and dead/low.
    The BPM judged is the one the science frames used (the night's last one if none did)."""
    bpms = [m for m in report["masters"] if m["type"] == "bpm" and m.get("path")]
    if not bpms:
        return {}
    used = [e["calibrations"]["bpm"]["name"] for e in report["science"]
            if e.get("calibrations", {}).get("bpm")]
    chosen = [m for m in bpms if Path(m["path"]).name in used] or bpms[-1:]
    flags = fits.getdata(chosen[0]["path"]) != 0
    truth = _truth(sim, "bpm.fits")
    x_hot = json.loads((sim.truth_dir / "truth.json").read_text())["bad_columns"]["hot"]["x"]
    column = np.zeros(truth.shape, bool)
    column[:, x_hot] = True
    bad_column = (truth & BAD_COLUMN) != 0
    hot = ((truth & HOT) != 0) | (bad_column & column)
    dead = ((truth & DEAD) != 0) | (bad_column & ~column)
    good = truth == 0
    out = {"false_flag_fraction": float(flags[good].mean()), "hot_recall": float(flags[hot].mean()),
           "dead_recall": float(flags[dead].mean()), "n_false": int(flags[good].sum()),
           "n_hot": int(hot.sum()), "n_dead": int(dead.sum())}
    glow_file = sim.truth_dir / "glow.fits"
    if glow_file.exists():
        in_glow = fits.getdata(glow_file) >= sim.spec.amp_glow * np.exp(-2.0)
        out["false_in_glow"] = int(flags[good & in_glow].sum())
    return out


def background_noise(sim: SimulatedNight, frame: Any) -> np.ndarray:
    """Noise (e-) of a science pixel without its cosmic ray: the shot noise of the truth's sky
    and dark current, and the read noise, in the raw frame's electrons."""
    flat = _truth(sim, _flat_file(sim, frame.filter)).astype(np.float64)
    rate = _truth(sim, "dark_rate.fits").astype(np.float64) * sim.spec.dark_factor(frame.temperature)
    if sim.spec.amp_glow > 0 and not sim.spec.amp_glow_thermal:
        rate = rate + _truth(sim, "glow.fits")
    expected = _truth(sim, f"sky_{frame.name}.fits") * flat + rate * frame.exptime
    return np.sqrt(np.maximum(expected, 0.0) + sim.read_noise_e**2)


def cosmic_figures(sim: SimulatedNight, report: dict) -> dict[str, float]:
    """Recall of cosmic-ray pixels whose charge is above CR_SNR times the pixel's noise
    without it (`background_noise`), overall and for hit pixels next to (8-neighbour) a truth
    bad or saturated pixel. A hit counts as found when the product's MASK gives it the cosmic-ray
    bit its header table names (``CF_DQ<bit> = 'COSMIC'``), or, in a product without the table,
    when it masks it at all."""
    bpm = _truth(sim, "bpm.fits") != 0
    found, total, found_near, total_near = 0, 0, 0, 0
    frames = _frames_by_name(sim)
    for entry in report["science"]:
        if entry.get("status") != "reduced":
            continue
        frame = frames[Path(entry["raw"]).stem]
        charge_file = sim.truth_dir / f"crq_{frame.name}.fits"
        if not charge_file.exists():
            return {}
        with fits.open(entry["path"]) as hdul:
            if "MASK" not in hdul:
                raise ValueError(f"{entry['path']}: no MASK extension to judge cosmic rays by")
            mask = np.asarray(hdul["MASK"].data)
            bits = [int(k[5:]) for k, v in hdul["MASK"].header.items()
                    if k.startswith("CF_DQ") and k[5:].isdigit() and str(v).strip() == "COSMIC"]
        charge = fits.getdata(charge_file).astype(np.float64)
        sat = _truth(sim, f"sat_{frame.name}.fits") != 0
        hit = (charge > CR_SNR * background_noise(sim, frame)) & ~bpm & ~sat
        near = hit & ndimage.binary_dilation(bpm | sat, structure=np.ones((3, 3), bool))
        flagged = (mask & bits[0]) != 0 if bits else mask != 0
        found, total = found + int((hit & flagged).sum()), total + int(hit.sum())
        found_near, total_near = found_near + int((near & flagged).sum()), total_near + int(near.sum())
    return {"recall": found / max(total, 1), "hits": total,
            "recall_beside_bad": found_near / max(total_near, 1), "hits_beside_bad": total_near}


def _flat_file(sim: SimulatedNight, filt: str | None) -> str:
    return f"flat_{file_safe(filt or sim.spec.filters[0])}.fits"


def choices(sim: SimulatedNight, report: dict) -> dict[str, Any]:
    """What the night chose: each science exposure time's darks (exposure time x scale) and
    each master type's combine method (CF_METH)."""
    frames = _frames_by_name(sim)
    darks: dict[str, set[str]] = defaultdict(set)
    for entry in report["science"]:
        dark = entry.get("calibrations", {}).get("dark")
        if dark:
            exptime = frames[Path(entry["raw"]).stem].exptime
            scale = dark.get("scaling") or 1.0
            darks[f"{exptime:g}s"].add(f"{exptime / scale:g}s x{scale:.3g}")
    methods = {}
    for m in report["masters"]:
        if m.get("path") and m["type"] != "bpm":
            methods[m["type"]] = str(fits.getheader(m["path"]).get("CF_METH", "?"))
    return {"darks": {k: sorted(v) for k, v in darks.items()}, "combine": methods}


def scorecard(sim: SimulatedNight, outdir: Path) -> dict[str, Any]:
    """Every figure, from a night reduced into `outdir` (its report.json)."""
    report = json.loads((Path(outdir) / "report.json").read_text())
    return {"science": science_figures(sim, report), "masters": master_figures(sim, report),
            "bpm": bpm_figures(sim, report), "cosmic_rays": cosmic_figures(sim, report),
            "choices": choices(sim, report)}

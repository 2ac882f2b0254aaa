"""One 2048x2048 science frame, raw to product, through ccdflow and the textbook ccdproc sequence.

    flock /tmp/ccdflow-bench.lock python bench/bench_science_frame.py [--size 2048] [--repeat 3]

ccdflow: ``reduce_frame`` with the default science recipe (saturation, overscan, trim,
linearity, uncertainty, bias, dark, flat, bpm, gain, cosmicray) and ``write_ccd`` (SCI, UNCERT,
MASK), its per-step seconds from ``StepContext.timings``. ccdproc: ``CCDData.read``,
``subtract_overscan``, ``trim_image``, ``create_deviation``, ``subtract_bias``,
``subtract_dark(scale=True)``, ``flat_correct``, BPM into the mask, ``gain_correct``,
``cosmicray_lacosmic``, ``CCDData.write`` with mask and uncertainty. Both use the same
masters (loaded once, outside the timing) and the same L.A.Cosmic parameters, and
``astroscrappy.detect_cosmics`` is timed alone on the same electrons. Runs are interleaved
and the median of each step is reported.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
import warnings
from pathlib import Path

import astropy.units as u
import astroscrappy
import ccdproc
import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import MasterRef, group_frames, reduce_frame
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.simulator import SimulationSpec, simulate_night

#: The cosmicray step's defaults, given to ccdproc and astroscrappy too.
LACOSMIC = dict(sigclip=4.5, sigfrac=0.3, objlim=5.0, niter=4, sepmed=True, cleantype="meanmask",
                fsmode="median")
NON_CR = ("read", "saturation", "overscan", "trim", "linearity", "uncertainty", "bias", "dark",
          "flat", "bpm", "gain", "write")


def prepare(folder: Path, size: int):
    """Simulate the night, build masters once and write them for both contenders."""
    spec = SimulationSpec(shape=(size, size), overscan=32, n_bias=3, n_dark=3, dark_exptimes=(300.0,),
                          dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=1,
                          science_exptime=120.0, seed=1)
    night = simulate_night(folder / "sim", spec)
    manager = get_plugin_manager()
    config = build(manager, instrument="generic")
    frames, _ = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    groups = {m[0].frame_type: m for m in group_frames(frames).values()}
    bias = build_master("bias", groups["bias"], manager, config)
    dark = build_master("dark", groups["dark"], manager, config, {"bias": bias})
    flat = build_master("flat", groups["flat"], manager, config, {"bias": bias, "dark": dark})
    bpm = CCDData(fits.getdata(night.truth_dir / "bpm.fits").astype(np.uint8), unit="")
    bpm.header["CF_MTYPE"] = "bpm"
    masters, plain = {}, {}
    for kind, ccd in (("bias", bias), ("dark", dark), ("flat", flat), ("bpm", bpm)):
        write_ccd(ccd, folder / f"{kind}.fits")
        masters[kind] = MasterRef.load(kind, folder / f"{kind}.fits")
        plain[kind] = CCDData(ccd.data, unit=ccd.unit, uncertainty=getattr(ccd, "uncertainty", None),
                              header=ccd.header)
    return night, manager, config, groups["science"][0], masters, plain


def run_ccdflow(meta, manager, config, masters, out: Path) -> tuple[dict[str, float], CCDData]:
    timings: dict[str, float] = {}
    start = time.perf_counter()
    ccd, _ = reduce_frame(meta, manager, config, masters, out, timings=timings)
    timings["total"] = time.perf_counter() - start
    return timings, ccd


def run_ccdproc(meta, plain, night, out: Path) -> tuple[dict[str, float], CCDData]:
    """The textbook sequence (ccdproc's own documentation and the CCD data reduction guide)."""
    t: dict[str, float] = {}
    gain, rn = night.gain * u.electron / u.adu, night.read_noise_e * u.electron

    def timed(name, fn):
        start = time.perf_counter()
        value = fn()
        t[name] = time.perf_counter() - start
        return value

    total = time.perf_counter()
    ccd = timed("read", lambda: CCDData.read(meta.path, unit="adu"))
    ccd = timed("overscan", lambda: ccdproc.subtract_overscan(
        ccd, fits_section=ccd.header["BIASSEC"], median=True, overscan_axis=1))
    ccd = timed("trim", lambda: ccdproc.trim_image(ccd, fits_section=ccd.header["TRIMSEC"]))
    ccd = timed("uncertainty", lambda: ccdproc.create_deviation(ccd, gain=gain, readnoise=rn,
                                                                disregard_nan=True))
    ccd = timed("bias", lambda: ccdproc.subtract_bias(ccd, plain["bias"]))
    ccd = timed("dark", lambda: ccdproc.subtract_dark(ccd, plain["dark"], exposure_time="EXPTIME",
                                                      exposure_unit=u.s, scale=True))
    ccd = timed("flat", lambda: ccdproc.flat_correct(ccd, plain["flat"]))

    def bpm():
        ccd.mask = plain["bpm"].data > 0 if ccd.mask is None else (ccd.mask | (plain["bpm"].data > 0))
        return ccd

    ccd = timed("bpm", bpm)
    ccd = timed("gain", lambda: ccdproc.gain_correct(ccd, gain))
    ccd = timed("cosmicray", lambda: ccdproc.cosmicray_lacosmic(
        ccd, gain=1.0, readnoise=night.read_noise_e, satlevel=night.saturation * night.gain,
        gain_apply=False, **LACOSMIC))
    timed("write", lambda: ccd.write(out, overwrite=True, hdu_mask="MASK", hdu_uncertainty="UNCERT"))
    t["total"] = time.perf_counter() - total
    return t, ccd


def run_astroscrappy(ccd: CCDData, night) -> float:
    data = np.ascontiguousarray(ccd.data, np.float32)
    mask = None if ccd.mask is None else np.ascontiguousarray(ccd.mask, bool)
    start = time.perf_counter()
    astroscrappy.detect_cosmics(data, inmask=mask, gain=1.0, readnoise=night.read_noise_e,
                                satlevel=night.saturation * night.gain, **LACOSMIC)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory(prefix="bench_sci_") as tmp:
        folder = Path(tmp)
        start = time.perf_counter()
        night, manager, config, meta, masters, plain = prepare(folder, args.size)
        print(f"prepared {args.size}x{args.size} night and masters in {time.perf_counter() - start:.1f} s")
        # astroscrappy alone gets what the cosmicray step gets: the frame after every other step
        no_cr = build(manager, instrument="generic", params=["cosmicray.skip=true"])
        _, before_cr = run_ccdflow(meta, manager, no_cr, masters, folder / "no_cr.fits")
        ours, theirs, scrappy = [], [], []
        # each round writes new files, as a night does: replacing an existing file by rename
        # makes ext4 (auto_da_alloc) start writing the new one out inside the rename, ~18 ms
        # for a 36 MB product, while astropy's overwrite unlinks the old file first
        for i in range(args.repeat + 1):  # the first round warms caches and imports; dropped
            t, _ = run_ccdflow(meta, manager, config, masters, folder / f"ccdflow-{i}.fits")
            ours.append(t)
            t, _ = run_ccdproc(meta, plain, night, folder / f"ccdproc-{i}.fits")
            theirs.append(t)
            scrappy.append(run_astroscrappy(before_cr, night))
        ours, theirs, scrappy = ours[1:], theirs[1:], scrappy[1:]

    def med(runs, key):
        values = [r[key] for r in runs if key in r]
        return statistics.median(values) if values else float("nan")

    print(f"\nmedian of {args.repeat} interleaved runs, seconds")
    print("| step | ccdflow | ccdproc | ratio |\n|---|---|---|---|")
    for key in (*NON_CR, "cosmicray"):
        a, b = med(ours, key), med(theirs, key)
        ratio = f"{b / a:.1f}x" if a == a and b == b and a > 0 else ""
        print(f"| {key} | {a * 1e3:.1f} ms | {b * 1e3:.1f} ms | {ratio} |".replace("nan ms", "-"))
    steps = [k for k in NON_CR if k not in ("read", "write")]
    ours_steps = statistics.median(sum(r.get(k, 0.0) for k in steps) for r in ours)
    theirs_steps = statistics.median(sum(r.get(k, 0.0) for k in steps) for r in theirs)
    print(f"| the steps (saturation..gain) | {ours_steps * 1e3:.0f} ms | {theirs_steps * 1e3:.0f} ms | "
          f"{theirs_steps / ours_steps:.1f}x |")
    ours_non_cr = statistics.median(sum(r.get(k, 0.0) for k in NON_CR) for r in ours)
    theirs_non_cr = statistics.median(sum(r.get(k, 0.0) for k in NON_CR) for r in theirs)
    print(f"| all but cosmic rays (read..write) | {ours_non_cr * 1e3:.0f} ms | "
          f"{theirs_non_cr * 1e3:.0f} ms | {theirs_non_cr / ours_non_cr:.1f}x |")
    print(f"| whole frame | {med(ours, 'total'):.2f} s | {med(theirs, 'total'):.2f} s | "
          f"{med(theirs, 'total') / med(ours, 'total'):.2f}x |")
    direct = statistics.median(scrappy)
    cr = med(ours, "cosmicray")
    print(f"\nastroscrappy.detect_cosmics alone: {direct:.3f} s; ccdflow cosmicray step {cr:.3f} s "
          f"(+{100 * (cr / direct - 1):.1f} %); ccdproc.cosmicray_lacosmic {med(theirs, 'cosmicray'):.3f} s "
          f"(+{100 * (med(theirs, 'cosmicray') / direct - 1):.1f} %)")
    print("targets: all but cosmic rays >= 10x faster than ccdproc; cosmicray step <= +5 % over "
          "astroscrappy")


if __name__ == "__main__":
    main()

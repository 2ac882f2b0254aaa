"""A simulated night through `ccdflow night` (serial and Dask) and a textbook ccdproc script.

    flock /tmp/ccdflow-bench.lock python bench/bench_night.py [--size 2048] [--n-science 180]
        [--workdir DIR] [--keep] [--skip-ccdproc] [--workers 2] [--one-thread-subset 20]
        [--retained-subset 30]

The night (issue 5, "Scale"): 20 bias, 40 darks at two exposure times (one temperature), 60
flats in three filters, 180 science frames; simulated once and cached in ``--workdir``.
Contenders, each in its own process so that its peak memory is its own:

- ``ccdflow night --workers 1`` and ``--workers N`` (Dask LocalCluster), fresh output folder
  and SQLite caldb each; stage walls from its ``--json`` summary, per-step seconds of every
  frame from ``report.json``;
- the textbook ccdproc script (``ccdproc_night`` below): ``ImageFileCollection``,
  ``subtract_overscan``, ``trim_image``, ``ccdproc.combine`` with sigma clipping for the
  masters, then ``create_deviation``, ``subtract_bias``, ``subtract_dark(scale=True)``,
  ``flat_correct``, ``gain_correct``, ``cosmicray_lacosmic`` and ``CCDData.write`` per frame;
- the cosmic-ray floor (``scrappy_floor``): ``astroscrappy.detect_cosmics`` alone, with the
  cosmicray step's parameters, on exactly the frame the step saw (the serial run's recipe up
  to the gain step, rebuilt untimed from its masters); again with ``OMP_NUM_THREADS=1`` (what a
  Dask worker gets) on a subset, and on a subset in a process that retains freed memory as the
  night's processes do (``ccdflow.framework.numerics.memory``), to tell the allocator's share of the
  difference from the step's own.

Peak memory: ``os.wait4`` gives the maximum RSS of a contender's process tree; each process's
own peak (``VmHWM`` of the driver and of every Dask worker) is sampled from /proc every 0.2 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

#: Steps timed apart from the arithmetic.
NOT_ARITHMETIC = ("cosmicray", "read", "write")
#: The cosmicray step's parameters that are not astroscrappy's.
NOT_ASTROSCRAPPY = {"skip", "satlevel", "use_variance", "clean", "edge_pad"}


# --------------------------------------------------------------------------- simulation

def night_spec(args: argparse.Namespace) -> Any:
    """The issue's night, scaled by the options: one dark temperature, science split over filters."""
    from ccdflow.simulator import SimulationSpec

    filters = ("B", "V", "R")
    return SimulationSpec(
        shape=(args.size, args.size), overscan=32, n_bias=args.n_bias, n_dark=args.n_dark // 2,
        dark_exptimes=(30.0, 120.0), dark_temperatures=(-20.0,), n_flat=args.n_flat // len(filters),
        filters=filters, n_science=max(1, args.n_science // len(filters)), science_exptime=60.0, seed=5)


def simulate(workdir: Path, args: argparse.Namespace) -> tuple[Path, float, bool]:
    """Raw folder, simulation seconds and whether it came from the cache."""
    from ccdflow.simulator import simulate_night

    spec = night_spec(args)
    key = spec.model_dump_json()
    folder = workdir / f"sim_{args.size}_{spec.n_bias}_{spec.n_dark}_{spec.n_flat}_{spec.n_science}"
    done = folder / "simulated.json"
    if done.is_file():
        cached = json.loads(done.read_text())
        if cached["spec"] == key:
            return Path(cached["raw_dir"]), cached["seconds"], True
    shutil.rmtree(folder, ignore_errors=True)
    start = time.perf_counter()
    night = simulate_night(folder, spec)
    seconds = time.perf_counter() - start
    done.write_text(json.dumps({"spec": key, "raw_dir": str(night.raw_dir), "seconds": seconds}))
    return night.raw_dir, seconds, False


# --------------------------------------------------------------------------- measuring a process

def code_fingerprint() -> str:
    """A hash of ccdflow's sources: the tree is shared with other engineers, and a comparison
    between contenders that ran different code (or a numba cache recompiling) must show."""
    import hashlib

    import ccdflow

    digest = hashlib.sha256()
    for path in sorted(Path(ccdflow.__file__).parent.rglob("*")):
        if path.suffix in (".py", ".yaml") and "__pycache__" not in path.parts:
            digest.update(str(path).encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:12]


def _hwm_kib(pid: int) -> int | None:
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
    except OSError:
        return None
    return None


def _label(pid: int, root: int) -> str:
    if pid == root:
        return "driver"
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
    except OSError:
        return f"pid {pid}"
    if "resource_tracker" in cmdline:
        return "resource tracker"
    if "spawn_main" in cmdline or "forkserver" in cmdline:
        return "worker"
    return f"pid {pid}"


def run_measured(cmd: list[str], stdout: Path, env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run ``cmd``: wall seconds, exit code, peak RSS of the tree (wait4) and of each process."""
    import psutil

    peaks: dict[int, tuple[str, int]] = {}
    code_before = code_fingerprint()
    finished = threading.Event()
    start = time.perf_counter()
    with open(stdout, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.PIPE, env=env)

    def sample() -> None:
        root = psutil.Process(proc.pid)
        while not finished.is_set():
            try:
                pids = [proc.pid, *(c.pid for c in root.children(recursive=True))]
            except psutil.Error:
                pids = [proc.pid]
            for pid in pids:
                hwm = _hwm_kib(pid)
                if hwm is not None:
                    label = peaks[pid][0] if pid in peaks else _label(pid, proc.pid)
                    peaks[pid] = (label, max(hwm, peaks.get(pid, ("", 0))[1]))
            finished.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    stderr = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    finished.set()
    sampler.join()
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} exited {proc.returncode}:\n{stderr[-3000:]}")
    processes = sorted(((label, kib / 1024) for label, kib in peaks.values() if kib > 50 * 1024),
                       key=lambda p: (p[0] != "driver", p[0]))
    code = code_before if code_before == code_fingerprint() else f"{code_before}, changed during the run"
    return {"wall": wall, "peak_mib": usage.ru_maxrss / 1024, "processes": processes, "code": code}


# --------------------------------------------------------------------------- ccdflow night

def run_ccdflow(raw: Path, out: Path, workers: int) -> dict[str, Any]:
    """`ccdflow night` as a command; its stages and the per-frame step seconds."""
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    exe = shutil.which("ccdflow")
    base = [exe] if exe else [sys.executable, "-m", "ccdflow"]
    cmd = [*base, "night", str(raw), "--out", str(out / "night"), "--caldb",
           f"sqlite:///{out / 'caldb.sqlite'}", "--workers", str(workers), "--json"]
    measured = run_measured(cmd, out / "summary.json")
    summary = json.loads((out / "summary.json").read_text())
    report = json.loads((out / "night" / "report.json").read_text())
    science = [s for s in report["science"] if s["status"] == "reduced"]
    if len(science) != len(report["science"]) or summary["failed"]:
        raise SystemExit(f"ccdflow night --workers {workers}: not every frame was reduced: "
                         f"{summary['counts']}")

    def total(keys: Any) -> float:
        return sum(v for s in science for k, v in s["step_seconds"].items() if keys(k))

    stages = summary["seconds"]
    return {
        **measured, "scan": stages["scan"], "masters": stages["masters"], "science_wall": stages["science"],
        "read": total(lambda k: k == "read"), "arithmetic": total(lambda k: k not in NOT_ARITHMETIC),
        "cosmicray": total(lambda k: k == "cosmicray"),
        "cosmicray_by_raw": {s["raw"]: s["step_seconds"]["cosmicray"] for s in science},
        "write": total(lambda k: k == "write"),
        "frame_other": sum(s["seconds"] - sum(s["step_seconds"].values()) for s in science),
        "bpm": sum(m["seconds"] for m in report["masters"] if m["type"] == "bpm"),
        "n_frames": len(science), "reduced_dir": str(out / "night" / "reduced"),
        "report": str(out / "night" / "report.json"),
    }


# --------------------------------------------------------------------------- the ccdproc script

def lacosmic_options() -> dict[str, Any]:
    """The cosmicray step's L.A.Cosmic parameters as ccdflow's generic instrument resolves them."""
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.engine.plugins import get_plugin_manager

    params = build(get_plugin_manager(), instrument="generic").params("cosmicray")
    return params.model_dump(exclude=NOT_ASTROSCRAPPY)


def ccdproc_night(raw: str, out: str, result: str) -> None:
    """The classic ccdproc workflow (the CCD data reduction guide), timed by stage."""
    import warnings

    import astropy.units as u
    import ccdproc
    import numpy as np
    from astropy.nddata import CCDData

    warnings.simplefilter("ignore")
    options = lacosmic_options()
    t: dict[str, float] = {"read": 0.0, "arithmetic": 0.0, "cosmicray": 0.0, "write": 0.0}
    outdir = Path(out)
    (outdir / "masters").mkdir(parents=True, exist_ok=True)
    (outdir / "reduced").mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    ifc = ccdproc.ImageFileCollection(raw, keywords=["imagetyp", "exptime", "filter", "biassec",
                                                     "trimsec", "gain", "rdnoise", "saturate"])
    table = ifc.summary
    first = table[0]
    gain = float(first["gain"]) * u.electron / u.adu
    read_noise = float(first["rdnoise"]) * u.electron
    biassec, trimsec = str(first["biassec"]), str(first["trimsec"])
    files = {kind: ifc.files_filtered(imagetyp=kind, include_path=True)
             for kind in ("BIAS", "DARK", "FLAT", "LIGHT")}
    dark_times = sorted({float(x) for x in table["exptime"][table["imagetyp"] == "DARK"]})
    filters = sorted({str(x) for x in table["filter"][table["imagetyp"] == "FLAT"]})
    t["scan"] = time.perf_counter() - start

    def prepare(path: str) -> CCDData:
        ccd = CCDData.read(path, unit="adu")
        ccd = ccdproc.subtract_overscan(ccd, fits_section=biassec, median=True, overscan_axis=1)
        return ccdproc.trim_image(ccd, fits_section=trimsec)

    def combine(ccds: list[CCDData], name: str, **kwargs: Any) -> CCDData:
        master = ccdproc.combine(ccds, method="average", sigma_clip=True, sigma_clip_low_thresh=3,
                                 sigma_clip_high_thresh=3, sigma_clip_func="median",
                                 sigma_clip_dev_func="mad_std", **kwargs)
        master.meta["combined"] = True
        master.write(outdir / "masters" / name, overwrite=True)
        return master

    start = time.perf_counter()
    bias = combine([prepare(p) for p in files["BIAS"]], "bias.fits")
    darks = {}
    for exptime in dark_times:
        paths = ifc.files_filtered(imagetyp="DARK", exptime=exptime, include_path=True)
        darks[exptime] = combine([ccdproc.subtract_bias(prepare(p), bias) for p in paths],
                                 f"dark_{exptime:g}s.fits")
    # the longest dark, scaled to each exposure: the least noise per second
    dark = darks[max(dark_times)]

    def debias_dedark(ccd: CCDData) -> CCDData:
        ccd = ccdproc.subtract_bias(ccd, bias)
        return ccdproc.subtract_dark(ccd, dark, exposure_time="exptime", exposure_unit=u.s, scale=True)

    flats = {}
    for name in filters:
        paths = ifc.files_filtered(imagetyp="FLAT", filter=name, include_path=True)
        flats[name] = combine([debias_dedark(prepare(p)) for p in paths], f"flat_{name}.fits",
                              scale=lambda a: 1.0 / np.ma.median(a))
    t["masters"] = time.perf_counter() - start

    start = time.perf_counter()
    for path in files["LIGHT"]:
        clock = time.perf_counter()
        ccd = CCDData.read(path, unit="adu")
        t["read"] += time.perf_counter() - clock
        clock = time.perf_counter()
        ccd = ccdproc.subtract_overscan(ccd, fits_section=biassec, median=True, overscan_axis=1)
        ccd = ccdproc.trim_image(ccd, fits_section=trimsec)
        ccd = ccdproc.create_deviation(ccd, gain=gain, readnoise=read_noise, disregard_nan=True)
        ccd = debias_dedark(ccd)
        ccd = ccdproc.flat_correct(ccd, flats[str(ccd.header["FILTER"])])
        ccd = ccdproc.gain_correct(ccd, gain)
        t["arithmetic"] += time.perf_counter() - clock
        clock = time.perf_counter()
        saturation = float(ccd.header["SATURATE"]) * gain.value
        ccd = ccdproc.cosmicray_lacosmic(ccd, gain=1.0, readnoise=read_noise.value, satlevel=saturation,
                                         gain_apply=False, **options)
        t["cosmicray"] += time.perf_counter() - clock
        clock = time.perf_counter()
        ccd.write(outdir / "reduced" / Path(path).name, overwrite=True, hdu_mask="MASK",
                  hdu_uncertainty="UNCERT")
        t["write"] += time.perf_counter() - clock
    t["science_wall"] = time.perf_counter() - start
    t["n_frames"] = len(files["LIGHT"])
    Path(result).write_text(json.dumps(t))


def run_ccdproc(raw: Path, out: Path) -> dict[str, Any]:
    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    result = out / "stages.json"
    measured = run_measured([sys.executable, __file__, "--child", "ccdproc", str(raw), str(out / "night"),
                             str(result)], out / "stdout.txt")
    return {**measured, **json.loads(result.read_text()), "frame_other": 0.0}


# --------------------------------------------------------------------------- the cosmic-ray floor

def scrappy_floor(serial_report: str, result: str, limit: str, retain: str = "0") -> None:
    """astroscrappy alone on the frames the serial run's cosmicray step saw, with its parameters.

    Each frame is rebuilt (untimed) by ccdflow's recipe with the cosmicray step skipped and the
    masters the serial run chose (its product header names them). astroscrappy runs on the frame
    as it is (its own time, what a ccdproc user pays); the step reflects the frame by ``edge_pad``
    pixels first, which changes the mask near the edge only, so the mask returned here, OR the
    frame's mask, must equal the product's MASK farther than ``niter`` reflection widths from
    the edge: that proves the input was the same. ``retain`` "1": glibc keeps freed arrays, as
    in ``ccdflow night``'s processes.
    """
    import astroscrappy
    import numpy as np
    from astropy.io import fits

    from ccdflow.framework.builders.reduction import MasterRef, reduce_frame
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.engine.plugins import get_plugin_manager
    from ccdflow.framework.headers.scan import scan_paths
    from ccdflow.framework.numerics.memory import retain_freed_memory
    from ccdflow.plugins.steps.cosmicray import edge_pad_needed

    retained = retain == "1" and retain_freed_memory()
    report = json.loads(Path(serial_report).read_text())
    science = report["science"][: int(limit) or None]
    manager = get_plugin_manager()
    config = build(manager, instrument="generic", params=["cosmicray.skip=true"])
    options = lacosmic_options()
    reach = options["niter"] * edge_pad_needed(options["sepmed"], options["fsmode"], options["psfsize"])
    inside = (slice(reach, -reach),) * 2
    metas = {str(m.path): m for m in scan_paths([s["raw"] for s in science], manager)[0]}
    masters_dir = Path(serial_report).parent / "masters"
    loaded: dict[str, Any] = {}
    seconds: list[float] = []
    same = 0
    with tempfile.TemporaryDirectory(prefix="bench_night_cr_") as scratch:
        for entry in science:
            header = fits.getheader(entry["path"])
            masters = {}
            for kind, card in (("bias", "CF_BIASF"), ("dark", "CF_DARKF"), ("flat", "CF_FLATF"),
                               ("bpm", "CF_BPMF")):
                if card in header:
                    name = header[card]
                    if name not in loaded:
                        loaded[name] = MasterRef.load(kind, masters_dir / name)
                    masters[kind] = loaded[name]
            ccd, _ = reduce_frame(metas[entry["raw"]], manager, config, masters, Path(scratch) / "pre.fits")
            data = np.ascontiguousarray(ccd.data, dtype=np.float32)
            inmask = None if ccd.mask is None else np.ascontiguousarray(ccd.mask, dtype=bool)
            satlevel = float(header["CF_SATLV"]) * float(header["CF_GAINV"])
            clock = time.perf_counter()
            crmask, _ = astroscrappy.detect_cosmics(data, inmask=inmask, gain=float(header["CF_CRGN"]),
                                                    readnoise=float(header["CF_CRRN"]),
                                                    satlevel=satlevel, **options)
            seconds.append(time.perf_counter() - clock)
            expected = fits.getdata(entry["path"], "MASK").astype(bool)
            found = crmask if inmask is None else crmask | inmask
            same += bool(np.array_equal(found[inside], expected[inside]))
    Path(result).write_text(json.dumps({"seconds": seconds, "same_mask": same, "retained": retained,
                                        "frames": [entry["raw"] for entry in science],
                                        "omp": os.environ.get("OMP_NUM_THREADS", "unset")}))


def run_scrappy(serial_report: str, out: Path, limit: int, one_thread: bool,
                retain: bool = False) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    tag = "1thread" if one_thread else "retained" if retain else "default"
    result = out / f"scrappy_{tag}.json"
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if one_thread else None
    measured = run_measured([sys.executable, __file__, "--child", "scrappy", serial_report, str(result),
                             str(limit), "1" if retain else "0"], out / f"scrappy_{tag}.txt", env=env)
    return {**measured, **json.loads(result.read_text())}


# --------------------------------------------------------------------------- comparing products

def compare_products(a: str, b: str) -> tuple[int, int, list[str]]:
    """(identical, total, names that differ): SCI, UNCERT and MASK of every reduced frame."""
    import numpy as np
    from astropy.io import fits

    names = sorted(p.name for p in Path(a).glob("*.fits"))
    differ = []
    for name in names:
        other = Path(b) / name
        if not other.is_file():
            differ.append(name)
            continue
        with fits.open(Path(a) / name) as x, fits.open(other) as y:
            planes = ("SCI", "UNCERT", "MASK")
            if not all(np.array_equal(x[e].data, y[e].data, equal_nan=True) for e in planes):
                differ.append(name)
    return len(names) - len(differ), len(names), differ


# --------------------------------------------------------------------------- table

COLUMNS = ("scan", "masters", "read", "arithmetic", "cosmicray", "write", "frame_other", "science_wall",
           "wall")


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    print("\n| contender | scan | masters | read | science arithmetic | cosmic rays | writing | "
          "per-frame other | science stage wall | total wall | peak RSS MiB (tree) |")
    print("|---|" + "---|" * 10)
    for name, r in rows.items():
        cells = " | ".join(f"{r[c]:.1f}" for c in COLUMNS)
        print(f"| {name} | {cells} | {r['peak_mib']:.0f} |")
    print("seconds; read/arithmetic/cosmic rays/writing/per-frame other are summed over frames "
          "(task-seconds: with Dask they add up over the workers); per-frame other = caldb queries, "
          "checksums, ledger; total wall = the whole process from outside.")
    for name, r in rows.items():
        procs = ", ".join(f"{label} {mib:.0f}" for label, mib in r["processes"])
        print(f"peak RSS per process, {name} (MiB, VmHWM sampled every 0.2 s): {procs}")
    codes = {r["code"] for r in rows.values()}
    print("ccdflow sources (hash) per contender: " + ", ".join(f"{n} {r['code']}" for n, r in rows.items()))
    if len(codes) > 1 or any("changed" in c for c in codes):
        print("WARNING: the ccdflow sources changed between or during the runs; the comparison mixes "
              "versions (and a changed numba kernel recompiles in the first run that uses it)")


def ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b > 0 else "-"


def print_ratios(rows: dict[str, dict[str, Any]], floor: dict[str, Any] | None,
                 floor1: dict[str, Any] | None, floor_kept: dict[str, Any] | None,
                 identical: tuple[int, int, list[str]] | None, workers: int) -> None:
    serial, parallel = rows["ccdflow serial"], rows.get(f"ccdflow {workers} workers")
    script = rows.get("ccdproc script")
    print("\nratios")
    if script:
        print(f"- masters, ccdproc script / ccdflow serial: {ratio(script['masters'], serial['masters'])} "
              f"(target >= 5x; ccdflow's stage also builds the BPM, {serial['bpm']:.1f} s)")
        if parallel:
            print(f"- masters, ccdproc script / ccdflow {workers} workers: "
                  f"{ratio(script['masters'], parallel['masters'])}")
        print(f"- science arithmetic, ccdproc script / ccdflow serial: "
              f"{ratio(script['arithmetic'], serial['arithmetic'])} (target >= 10x)")
        also = f"; / ccdflow {workers} workers: {ratio(script['wall'], parallel['wall'])}" if parallel else ""
        print(f"- whole night wall, ccdproc script / ccdflow serial: {ratio(script['wall'], serial['wall'])}"
              + also)
        print(f"- cosmic rays, ccdproc cosmicray_lacosmic / ccdflow serial step: "
              f"{ratio(script['cosmicray'], serial['cosmicray'])}")
    if floor:
        own = sum(floor["seconds"])
        n = len(floor["seconds"])
        print(f"- astroscrappy alone (OMP_NUM_THREADS {floor['omp']}), {n} frames: {own:.1f} s "
              f"({own / n:.2f} s per frame); its masks equal the serial products' (away from the edge) for "
              f"{floor['same_mask']}/{n} frames")
        print(f"- cosmic rays, ccdflow serial step / astroscrappy alone: "
              f"{100 * (serial['cosmicray'] / own - 1):+.1f} % (target within 5 %)")
        print(f"- night wall / astroscrappy floor: serial {serial['wall'] / own:.2f}"
              + (f", {workers} workers {parallel['wall'] / own:.2f}" if parallel else ""))
    if floor and floor_kept:
        n = len(floor_kept["frames"])
        step = sum(serial["cosmicray_by_raw"][raw] for raw in floor_kept["frames"])
        plain, kept = sum(floor["seconds"][:n]), sum(floor_kept["seconds"])
        print(f"- the first {n} frames: ccdflow serial step {step / n:.2f} s per frame, astroscrappy alone "
              f"{plain / n:.2f} s ({100 * (step / plain - 1):+.1f} %), astroscrappy alone in a process "
              f"that retains freed memory {kept / n:.2f} s ({100 * (step / kept - 1):+.1f} %"
              f"{'' if floor_kept['retained'] else '; retention NOT in effect'})")
    if floor1 and parallel:
        per_frame = sum(floor1["seconds"]) / len(floor1["seconds"])
        one = per_frame * parallel["n_frames"]
        print(f"- astroscrappy with OMP_NUM_THREADS=1 (a Dask worker's setting), {len(floor1['seconds'])} "
              f"frames: {per_frame:.2f} s per frame, {one:.1f} s scaled to {parallel['n_frames']} frames; "
              f"masks equal for {floor1['same_mask']}/{len(floor1['seconds'])}")
        print(f"- cosmic rays, ccdflow {workers} workers step (task-seconds) / one-thread astroscrappy: "
              f"{100 * (parallel['cosmicray'] / one - 1):+.1f} %")
        print(f"- {workers} workers wall / (one-thread astroscrappy / {workers}): "
              f"{parallel['wall'] / (one / workers):.2f}")
    if identical:
        same, total, differ = identical
        print(f"- serial vs {workers} workers: {same}/{total} reduced frames identical in SCI, UNCERT and "
              f"MASK" + (f"; differ: {', '.join(differ[:10])}" if differ else ""))


# --------------------------------------------------------------------------- main

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048, help="Frame side in pixels (data area).")
    parser.add_argument("--n-bias", type=int, default=20)
    parser.add_argument("--n-dark", type=int, default=40, help="Darks in all, split over two exposure times.")
    parser.add_argument("--n-flat", type=int, default=60, help="Flats in all, split over three filters.")
    parser.add_argument("--n-science", type=int, default=180,
                        help="Science frames, split over three filters.")
    parser.add_argument("--workers", type=int, default=2, help="Dask workers of the parallel run.")
    parser.add_argument("--one-thread-subset", type=int, default=20,
                        help="Frames timed with astroscrappy at OMP_NUM_THREADS=1 (0: skip).")
    parser.add_argument("--retained-subset", type=int, default=30,
                        help="Frames timed with astroscrappy in a process keeping freed memory (0: skip).")
    parser.add_argument("--workdir", type=Path, help="Keeps the simulated night between runs.")
    parser.add_argument("--keep", action="store_true", help="Keep the contenders' outputs.")
    parser.add_argument("--skip-ccdproc", action="store_true")
    parser.add_argument("--skip-parallel", action="store_true")
    parser.add_argument("--skip-floor", action="store_true", help="Skip the astroscrappy floor.")
    args = parser.parse_args()

    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench_night_"))
    workdir.mkdir(parents=True, exist_ok=True)
    runs = workdir / "runs"
    try:
        raw, sim_seconds, cached = simulate(workdir, args)
        count = len(list(raw.glob("*.fits")))
        print(f"night: {count} raw frames of {args.size}x{args.size + 32} in {raw}; simulated in "
              f"{sim_seconds:.1f} s{' (cached)' if cached else ''}; not part of any comparison", flush=True)
        rows: dict[str, dict[str, Any]] = {}
        rows["ccdflow serial"] = run_ccdflow(raw, runs / "serial", 1)
        print(f"ccdflow serial: {rows['ccdflow serial']['wall']:.1f} s", flush=True)
        if not args.skip_parallel:
            name = f"ccdflow {args.workers} workers"
            rows[name] = run_ccdflow(raw, runs / "parallel", args.workers)
            print(f"{name}: {rows[name]['wall']:.1f} s", flush=True)
        if not args.skip_ccdproc:
            rows["ccdproc script"] = run_ccdproc(raw, runs / "ccdproc")
            print(f"ccdproc script: {rows['ccdproc script']['wall']:.1f} s", flush=True)
            if not args.keep:
                shutil.rmtree(runs / "ccdproc", ignore_errors=True)
        serial_report = rows["ccdflow serial"]["report"]
        floor = floor1 = floor_kept = None
        if not args.skip_floor:
            floor = run_scrappy(serial_report, runs / "floor", 0, one_thread=False)
            print(f"astroscrappy floor: {sum(floor['seconds']):.1f} s", flush=True)
            if args.one_thread_subset and not args.skip_parallel:
                floor1 = run_scrappy(serial_report, runs / "floor", args.one_thread_subset, one_thread=True)
            if args.retained_subset:
                floor_kept = run_scrappy(serial_report, runs / "floor", args.retained_subset,
                                         one_thread=False, retain=True)
        identical = None
        if not args.skip_parallel:
            identical = compare_products(rows["ccdflow serial"]["reduced_dir"],
                                         rows[f"ccdflow {args.workers} workers"]["reduced_dir"])
        print_table(rows)
        print_ratios(rows, floor, floor1, floor_kept, identical, args.workers)
        (workdir / "results.json").write_text(json.dumps(
            {"args": {k: str(v) for k, v in vars(args).items()}, "simulation_seconds": sim_seconds,
             "rows": rows, "floor": floor, "floor_one_thread": floor1, "floor_retained": floor_kept,
             "identical": identical}, indent=1))
        if args.workdir is not None:
            print(f"\nfigures saved in {workdir / 'results.json'}")
    finally:
        if not args.keep:
            shutil.rmtree(runs, ignore_errors=True)
            if args.workdir is None:
                shutil.rmtree(workdir, ignore_errors=True)


def child() -> None:
    """``--child ccdproc RAW OUT RESULT`` or ``--child scrappy REPORT RESULT LIMIT RETAIN``."""
    what, *rest = sys.argv[2:]
    {"ccdproc": ccdproc_night, "scrappy": scrappy_floor}[what](*rest)


if __name__ == "__main__":
    child() if sys.argv[1:2] == ["--child"] else main()

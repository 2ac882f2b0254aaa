"""Master bias: ccdflow against ccdproc on the same frames, in one run.

    flock /tmp/ccdflow-bench.lock python bench/bench_master_bias.py [--size 2048] [--n 20] [--repeat 2]

Two comparisons, each contender in its own process (so peak RSS is its own); frames are
simulated once into a temporary folder:

- in-process: build_master (overscan, trim, sigma-clipped mean) against the textbook ccdproc
  script doing the same, timed inside each process;
- whole process: the ``ccdflow master bias FILES --out M.fits`` command against a script that
  only calls ``ccdproc.combine(files, method='median')``, wall time from the parent including
  Python start-up and imports (ccdflow still does overscan and trim on top).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CCDFLOW = """
import sys, time, json, resource, warnings
warnings.simplefilter("ignore")
from pathlib import Path
from ccdflow.framework.engine.config import build
from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.framework.headers.scan import scan_paths
paths = sorted(Path(sys.argv[1]).glob("*.fits"))
t0 = time.perf_counter()
manager = get_plugin_manager()
config = build(manager, instrument="generic")
metas, _ = scan_paths(paths, manager)
master = build_master("bias", metas, manager, config, method="mean", clip="sigma")
t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""

CCDPROC = """
import sys, time, json, resource, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import ccdproc
from astropy.nddata import CCDData
paths = sorted(Path(sys.argv[1]).glob("*.fits"))
t0 = time.perf_counter()
frames = []
for p in paths:
    ccd = CCDData.read(p, unit="adu")
    ccd = ccdproc.subtract_overscan(ccd, fits_section=ccd.header["BIASSEC"], median=True,
                                    overscan_axis=1)
    frames.append(ccdproc.trim_image(ccd, fits_section=ccd.header["TRIMSEC"]))
master = ccdproc.combine(frames, method="average", sigma_clip=True, sigma_clip_low_thresh=3,
                         sigma_clip_high_thresh=3, sigma_clip_func="median",
                         sigma_clip_dev_func="mad_std")
t = time.perf_counter() - t0
print(json.dumps({"seconds": t, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


CCDPROC_FILES = """
import sys, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import ccdproc
paths = sorted(Path(sys.argv[1]).glob("*.fits"))
ccdproc.combine([str(p) for p in paths], method="median", unit="adu").write(sys.argv[2], overwrite=True)
"""


def wall(cmd: list[str]) -> dict:
    """Wall time and peak RSS of a whole process (GNU time's %M)."""
    t0 = time.perf_counter()
    out = subprocess.run(["/usr/bin/time", "-f", "%M", *cmd], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode:
        raise RuntimeError(f"{cmd[:3]} failed: {out.stderr[-2000:]}")
    return {"seconds": seconds, "rss_mib": int(out.stderr.strip().splitlines()[-1]) / 1024}


def run(script: str, folder: Path) -> dict:
    out = subprocess.run([sys.executable, "-c", script, str(folder)], capture_output=True,
                         text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--n", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=2)
    args = parser.parse_args()
    from ccdflow.simulator import SimulationSpec, simulate_night

    with tempfile.TemporaryDirectory() as tmp:
        spec = SimulationSpec(shape=(args.size, args.size), n_bias=args.n, n_dark=0, n_flat=0,
                              n_science=0, seed=1)
        t0 = time.perf_counter()
        night = simulate_night(Path(tmp), spec)
        print(f"simulated {args.n} bias frames of {args.size}x{args.size} in "
              f"{time.perf_counter() - t0:.1f} s")
        bias_dir = Path(tmp) / "bias-only"
        bias_dir.mkdir()
        for f in night.frames:
            if f.frame_type == "bias":
                (bias_dir / Path(f.path).name).symlink_to(f.path)
        files = sorted(map(str, bias_dir.glob("*.fits")))
        results = {k: [] for k in ("ccdproc script", "ccdflow build_master", "ccdproc.combine(files, median)",
                                   "ccdflow master bias --method median --clip none",
                                   "ccdflow master bias (median, sigma clip)")}
        for _ in range(args.repeat):
            results["ccdproc script"].append(run(CCDPROC, bias_dir))
            results["ccdflow build_master"].append(run(CCDFLOW, bias_dir))
            results["ccdproc.combine(files, median)"].append(
                wall([sys.executable, "-c", CCDPROC_FILES, str(bias_dir), f"{tmp}/ccdproc.fits"]))
            results["ccdflow master bias --method median --clip none"].append(
                wall(["ccdflow", "master", "bias", *files, "--out", f"{tmp}/m1.fits", "--method", "median",
                      "--clip", "none"]))
            results["ccdflow master bias (median, sigma clip)"].append(
                wall(["ccdflow", "master", "bias", *files, "--out", f"{tmp}/m2.fits"]))
    print("\n| contender | best s | peak RSS MiB |\n|---|---|---|")
    best = {}
    for name, runs in results.items():
        best[name] = min(r["seconds"] for r in runs)
        print(f"| {name} | {best[name]:.2f} | {max(r['rss_mib'] for r in runs):.0f} |")
    print(f"\nin-process, ccdproc script / build_master: "
          f"{best['ccdproc script'] / best['ccdflow build_master']:.2f}x")
    base = best["ccdproc.combine(files, median)"]
    for name in list(results)[3:]:
        print(f"whole process, ccdproc.combine(files) / {name}: {base / best[name]:.2f}x")


if __name__ == "__main__":
    main()

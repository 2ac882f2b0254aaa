"""The combine engine against ccdproc.combine on the same FITS files, in one run.

    flock /tmp/ccdflow-bench.lock python bench/bench_combine.py [--cases 10x2048,20x2048,40x2048,20x4096]
        [--methods median,clip] [--big]

For each case N float32 frames are written to a temporary folder (so they sit in the page cache,
as for every contender). Each contender runs in its own process, which combines the files twice:
``first`` is the first call of the process (imports done, numba kernels loaded from its cache),
``warm`` the second; peak RSS is the child's ``ru_maxrss`` (wait4). Contenders:

- ccdproc default: ``ccdproc.combine(files, method=...)``;
- ccdproc mem_limit: the same with ``mem_limit=350e6`` (its fastest configuration);
- ccdflow: ``combine([fits_source(f) ...])`` with its defaults.

Methods: ``median`` (no rejection) and ``clip`` (sigma-clipped mean, median/mad_std 3/3 with the
string functions). The ratio is ccdproc mem_limit's time over ccdflow's (first call and warm), the
RSS ratio ccdflow over ccdproc default, the difference max |ccdflow - ccdproc| / median level.
``--big`` adds 60 frames of 4096x4096 (4 GB) under ``memory_limit=1_000_000_000``.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from astropy.io import fits

CHILD = r"""
import json, sys, time, warnings
warnings.simplefilter("ignore")
from pathlib import Path
import numpy as np
kind, method, folder, out = sys.argv[1:5]
extra = json.loads(sys.argv[5])
repeat = int(extra.pop("_repeat", 2))
paths = sorted(str(p) for p in Path(folder).glob("*.fits"))
if kind == "ccdflow":
    from ccdflow.framework.numerics.combine import combine, fits_source
    opts = dict(method="median", clip="none") if method == "median" else dict(method="mean", clip="sigma")
    run = lambda: combine([fits_source(p) for p in paths], **opts, **extra).data
else:
    import ccdproc
    opts = dict(method="median") if method == "median" else dict(
        method="average", sigma_clip=True, sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
        sigma_clip_func="median", sigma_clip_dev_func="mad_std")
    run = lambda: np.asarray(ccdproc.combine(paths, unit="adu", **opts, **extra).data)
times = []
for _ in range(repeat):
    t0 = time.perf_counter()
    data = run()
    times.append(time.perf_counter() - t0)
np.save(out, data.astype(np.float32))
print(json.dumps({"times": times}))
"""


def run_child(kind: str, method: str, folder: Path, out: Path, extra: dict) -> dict:
    """Run one contender in a fresh process; its times, whole-process wall and peak RSS."""
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, kind, method, str(folder), str(out),
                             json.dumps(extra)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    stdout, stderr = proc.stdout.read(), proc.stderr.read()
    if status:
        raise SystemExit(f"{kind} {method} failed:\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(wall=wall, rss_mib=usage.ru_maxrss / 1024)
    return result


def write_frames(folder: Path, n: int, size: int, seed: int = 1) -> None:
    """N frames like a bias/flat stack: a level, Gaussian noise and a few cosmic rays each."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        data = rng.normal(1000.0, 10.0, (size, size)).astype(np.float32)
        hits = rng.integers(0, size, (size // 8, 2))
        data[hits[:, 0], hits[:, 1]] += rng.uniform(200, 20000, len(hits)).astype(np.float32)
        fits.PrimaryHDU(data).writeto(folder / f"f{i:03d}.fits")


def bench_case(root: Path, n: int, size: int, methods: list[str]) -> list[dict]:
    folder = root / f"{n}x{size}"
    write_frames(folder, n, size)
    rows = []
    for method in methods:
        res = {}
        for kind, label, extra in (("ccdproc", "ccdproc default", {}),
                                   ("ccdproc", "ccdproc mem_limit", {"mem_limit": 350e6}),
                                   ("ccdflow", "ccdflow", {})):
            out = root / f"{label.replace(' ', '_')}.npy"
            res[label] = run_child(kind, method, folder, out, extra)
            res[label]["data"] = np.load(out)
        ref, ours = res["ccdproc mem_limit"]["data"], res["ccdflow"]["data"]
        level = float(np.nanmedian(ref))
        finite = np.isfinite(ref) & np.isfinite(ours)
        diff = float(np.max(np.abs(ours[finite] - ref[finite]))) / level
        for label, r in res.items():
            rows.append(dict(case=f"{n} x {size}", method=method, contender=label, first=r["times"][0],
                             warm=r["times"][-1], wall=r["wall"], rss=r["rss_mib"]))
        fast, dflt = res["ccdproc mem_limit"], res["ccdproc default"]
        rows[-1].update(ratio_first=fast["times"][0] / res["ccdflow"]["times"][0],
                        ratio_warm=fast["times"][-1] / res["ccdflow"]["times"][-1],
                        ratio_wall=fast["wall"] / res["ccdflow"]["wall"],
                        rss_share=res["ccdflow"]["rss_mib"] / dflt["rss_mib"], diff=diff,
                        nan_mismatch=int(np.sum(np.isnan(ref) != np.isnan(ours))))
        print_rows(rows[-3:])
    shutil.rmtree(folder)
    return rows


def print_rows(rows: list[dict]) -> None:
    for r in rows:
        line = (f"| {r['case']} | {r['method']} | {r['contender']} | {r['first']:.2f} | {r['warm']:.2f} | "
                f"{r['wall']:.2f} | {r['rss']:.0f} |")
        if "ratio_first" in r:
            line += (f" {r['ratio_first']:.1f}x / {r['ratio_warm']:.1f}x / {r['ratio_wall']:.1f}x | "
                     f"{r['rss_share']:.3f} | {r['diff']:.1e} ({r['nan_mismatch']} NaN mismatches) |")
        else:
            line += " | | |"
        print(line, flush=True)


def bench_big(root: Path) -> None:
    """60 frames of 4096x4096 float32 (4 GB) under a 1 GB memory limit: time and peak RSS."""
    folder = root / "big"
    write_frames(folder, 60, 4096, seed=2)
    for method in ("median", "clip"):
        r = run_child("ccdflow", method, folder, root / "big.npy",
                      {"memory_limit": 1_000_000_000, "_repeat": 1})
        print(f"| 60 x 4096 | {method} | ccdflow memory_limit=1e9 | {r['times'][0]:.2f} | | "
              f"{r['wall']:.2f} | {r['rss_mib']:.0f} |", flush=True)
    shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", default="10x2048,20x2048,40x2048,20x4096")
    parser.add_argument("--methods", default="median,clip")
    parser.add_argument("--big", action="store_true", help="also 60 x 4096x4096 under memory_limit=1e9")
    parser.add_argument("--tmp", default=None, help="folder for the frames (default: system temp)")
    args = parser.parse_args()
    print("| case | method | contender | first s | warm s | whole process s | peak RSS MiB | "
          "speed-up vs ccdproc mem_limit (first / warm / process) | RSS / ccdproc default | "
          "max diff / level |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        root = Path(tmp)
        if args.cases:
            for case in args.cases.split(","):
                n, size = (int(v) for v in case.split("x"))
                bench_case(root, n, size, args.methods.split(","))
        if args.big:
            bench_big(root)


if __name__ == "__main__":
    main()

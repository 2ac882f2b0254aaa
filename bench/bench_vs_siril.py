"""ccdflow against siril-cli on the same raw files, in one interleaved run.

    flock /tmp/ccdflow-bench.lock python bench/bench_vs_siril.py [--size 2048] [--n 20] [--repeat 3]

Siril (C, multithreaded; ``apt-get install siril``, scripted with ``siril-cli -s``) is what many
small observatories calibrate with. Each task is one whole process per contender (start-up,
imports and writing included), timed from the parent with GNU time (wall, user + system CPU,
peak RSS of the largest process):

- **master bias**: N raw 16-bit biases, sigma-clipped mean 3/3. Siril ``convert`` then
  ``stack bias rej s 3 3 -nonorm``; ccdflow ``master bias --method mean --clip sigma``.
- **master dark**: 10 raw darks, same rejection (Siril's dark keeps the bias, as Siril's own
  workflow uses it; ccdflow's has the master bias subtracted).
- **master flat**: N flats, bias-subtracted and normalised. Siril ``preprocess flat -bias=`` then
  ``stack pp_flat rej s 3 3 -norm=mul``; ccdflow ``master flat --bias --dark`` (its recipe also
  subtracts the dark and normalises to a median of 1).
- **science**: N science frames calibrated with bias, dark and flat. Siril ``preprocess light
  -dark= -flat=`` (its dark holds the bias); ccdflow ``reduce --bias --dark --flat
  -p cosmicray.skip=true``, which also writes UNCERT and MASK. Reported as frames per second.

With ``--floor``, a third contender shows what no Python tool gets under (bench/floor_python.py):
for a master, a numba tool's start-up and the I/O any master needs (inputs read and hashed, the
master written and hashed; no combining); for the science frames, plain numpy calibration
writing the same three planes with their SHA-256 (ccdflow's masters); and 'i/o floor', what
any tool in any language pays for the science frames' provenance and planes alone (inputs read
and hashed, products of ccdflow's size written and hashed, two at a time, no arithmetic).

**Warm memory** (default; ``--cold-memory`` turns it off): before each timed run a separate
process touches and frees 2 GiB. On this VM a page the guest freed costs ~2 ms per MiB on its
next first touch (320 MiB written to a new file: 0.05 s warm, 0.28-0.82 s cold), and how many a
run meets depends on what ran before it, not on the software (bench/README.md, runs 6-10).

Each contender uses its own masters, built from the same raw files in the first round.
Agreement: the products' difference (Siril's [0, 1] floats times 65535; flats each over their
median; ccdflow's science electrons over the gain) against the noise ccdflow's UNCERT states.
Without siril-cli the script says how to install it and exits.
"""

from __future__ import annotations

import argparse
import functools
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits

GAIN, RDNOISE, BIAS_LEVEL, DARK_RATE = 1.5, 3.5, 1000.0, 0.05  # e-/ADU, e-, ADU, e-/s
EXPTIME_SCIENCE = EXPTIME_DARK = 60.0


def write_raw(path: Path, image: np.ndarray, kind: str, exptime: float, i: int) -> None:
    """One 16-bit unsigned frame (BZERO 32768, as cameras write) with generic-instrument cards."""
    header = fits.Header()
    header["IMAGETYP"] = kind
    header["EXPTIME"] = exptime
    header["DATE-OBS"] = f"2026-01-01T{1 + i // 60:02d}:{i % 60:02d}:00"
    header["FILTER"] = "V"
    header["CCD-TEMP"] = -10.0
    header["GAIN"] = (GAIN, "e-/ADU")
    header["RDNOISE"] = (RDNOISE, "e-")
    pixels = np.clip(np.round(image), 0, 65535).astype(np.uint16)
    fits.PrimaryHDU(pixels, header).writeto(path)


def simulate(root: Path, size: int, n: int, n_dark: int) -> dict[str, Path]:
    """Raw bias, dark, flat and science frames, one folder each (Siril reads a folder's files
    as one sequence)."""
    rng = np.random.default_rng(16)
    y, x = np.mgrid[0:size, 0:size] / size - 0.5
    vignetting = (1 - 0.3 * (x**2 + y**2)) * rng.normal(1, 0.01, (size, size))  # pixel response
    hot = rng.random((size, size)) < 1e-4
    dark_rate = np.where(hot, 20.0, DARK_RATE)  # e-/s
    read = RDNOISE / GAIN
    folders = {k: root / k for k in ("bias", "dark", "flat", "science")}
    for folder in folders.values():
        folder.mkdir(parents=True)

    def frame(electrons: np.ndarray | float) -> np.ndarray:
        return BIAS_LEVEL + rng.poisson(electrons) / GAIN + rng.normal(0, read, (size, size))

    for i in range(n):
        write_raw(folders["bias"] / f"bias_{i:03d}.fits", frame(np.zeros((size, size))), "Bias Frame", 0.0, i)
        write_raw(folders["flat"] / f"flat_{i:03d}.fits", frame(30000.0 * vignetting), "Flat Field", 2.0,
                  100 + i)
        sky = (200.0 + rng.random() * 10) * vignetting
        stars = np.zeros((size, size))
        for _ in range(50):
            sy, sx = rng.integers(10, size - 10, 2)
            stars[sy - 2:sy + 3, sx - 2:sx + 3] += rng.uniform(500, 20000)
        write_raw(folders["science"] / f"sci_{i:03d}.fits",
                  frame((sky + stars * vignetting) + dark_rate * EXPTIME_SCIENCE), "Light Frame",
                  EXPTIME_SCIENCE, 200 + i)
    for i in range(n_dark):
        write_raw(folders["dark"] / f"dark_{i:03d}.fits", frame(dark_rate * EXPTIME_DARK), "Dark Frame",
                  EXPTIME_DARK, 300 + i)
    return folders


#: Contenders that are not tools: what no Python tool, and no tool at all, gets under.
FLOORS = ("python floor", "i/o floor")
#: Bytes a separate process touches and frees before each timed run (see "Warm memory").
WARM_BYTES = 2 << 30
warm_memory = True


def measure(cmd: list[str], cwd: Path | None = None, pythonpath: str | None = None) -> dict[str, float]:
    """Wall, CPU (user + system) and peak RSS (MiB, largest process) from GNU time."""
    env = dict(os.environ, PYTHONPATH=pythonpath) if pythonpath else None
    if warm_memory:  # untimed: the guest's free pages backed by the host again
        subprocess.run([sys.executable, "-c", f"import numpy; numpy.ones({WARM_BYTES}, numpy.uint8)"],
                       check=True)
    out = subprocess.run(["/usr/bin/time", "-f", "TIME %e %U %S %M", *cmd], capture_output=True, text=True,
                         cwd=cwd, env=env)
    line = [s for s in out.stderr.splitlines() if s.startswith("TIME ")]
    if out.returncode or not line:
        raise RuntimeError(f"{cmd[:4]} failed ({out.returncode}): {out.stderr[-3000:]}{out.stdout[-3000:]}")
    wall, user, system, rss = map(float, line[-1].split()[1:])
    return {"wall": wall, "cpu": user + system, "rss": rss / 1024}


def siril(script: str, cwd: Path) -> dict[str, float]:
    """Run a Siril script (written into ``cwd``) in a fresh siril-cli process."""
    path = cwd / "run.ssf"
    path.write_text("requires 1.0.0\nsetext fits\n" + script)
    result = measure(["siril-cli", "-d", str(cwd), "-s", str(path)], cwd=cwd)
    return result


def siril_task(task: str, raw: dict[str, Path], work: Path, masters: dict[str, Path]) -> dict[str, float]:
    """One Siril task in a fresh folder ``work`` (its sequences are links to the raw files)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    convert = f"cd {raw[task]}\nconvert {task} -out={work}\ncd {work}\n"
    script = {
        "bias": "stack bias rej s 3 3 -nonorm -out=master\n",
        "dark": "stack dark rej s 3 3 -nonorm -out=master\n",
        "flat": f"preprocess flat -bias={masters.get('bias', '')}\n"
                "stack pp_flat rej s 3 3 -norm=mul -out=master\n",
        "science": f"preprocess science -dark={masters.get('dark', '')} -flat={masters.get('flat', '')}\n",
    }[task]
    return siril(convert + script, work)


def ccdflow_task(task: str, raw: dict[str, Path], work: Path, masters: dict[str, Path],
                 pythonpath: str | None = None) -> dict[str, float]:
    """The same task as one ``ccdflow`` command (``pythonpath``: another checkout's code), run in
    ``work``: ``python -m`` looks in its folder first, so a checkout there would win."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    exe = [sys.executable, "-m", "ccdflow"]
    cals = [a for k in ("bias", "dark", "flat") if k in masters for a in (f"--{k}", str(masters[k]))]
    if task == "science":
        files = sorted(map(str, raw["science"].glob("*.fits")))
        return measure([*exe, "reduce", *files, "--out", str(work), *cals, "-p", "cosmicray.skip=true"],
                       work, pythonpath)
    cals = {"bias": [], "dark": cals[:2], "flat": cals[:4]}[task]
    return measure([*exe, "master", task, str(raw[task]), "--method", "mean", "--clip", "sigma", *cals,
                    "--out", str(work / "master.fits")], work, pythonpath)


def floor_task(task: str, raw: dict[str, Path], work: Path, masters: dict[str, Path]) -> dict[str, float]:
    """floor_python.py: start-up and the inputs' and master's I/O for a master, plain numpy for
    the science frames."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    script = str(Path(__file__).with_name("floor_python.py"))
    if task != "science":
        files = sorted(map(str, raw[task].glob("*.fits")))
        return measure([sys.executable, script, "master", str(work), *files], work)
    files = sorted(map(str, raw["science"].glob("*.fits")))
    cals = [str(masters[k]) for k in ("bias", "dark", "flat")]
    return measure([sys.executable, script, "science", str(work), *cals, *files], work)


def io_floor_task(task: str, raw: dict[str, Path], work: Path, masters: dict[str, Path]) -> dict[str, float]:
    """floor_python.py io: the science frames' provenance and planes alone (see the module doc)."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    files = sorted(map(str, raw["science"].glob("*.fits")))
    return measure([sys.executable, str(Path(__file__).with_name("floor_python.py")), "io", str(work),
                    *files], work)


def agreement(task: str, work: dict[str, Path], siril_bias: Path | None) -> str:
    """Difference statistics of the two products against the noise ccdflow states (std of the
    difference, and 1.4826 MAD: robust to the few pixels the two rejections treat apart)."""
    if task == "science":
        name = "sci_000"
        ours_path = next((work["ccdflow"] / "reduced").glob(f"*{name}*"))
        theirs_path = work["siril"] / "pp_science_00001.fits"
    else:
        ours_path, theirs_path = work["ccdflow"] / "master.fits", work["siril"] / "master.fits"
    with fits.open(ours_path) as hdul:
        sci = hdul["SCI"] if "SCI" in hdul else hdul[0]
        ours = sci.data.astype(np.float64)
        noise = float(np.median(hdul["UNCERT"].data)) if "UNCERT" in hdul else float("nan")
        unit = str(sci.header.get("BUNIT", "adu")).lower()
    theirs = fits.getdata(theirs_path).astype(np.float64) * 65535.0
    if task == "science" and unit.startswith("electron"):
        ours, noise = ours / GAIN, noise / GAIN
    if task == "dark" and siril_bias is not None:  # Siril's dark keeps the bias
        theirs -= fits.getdata(siril_bias).astype(np.float64) * 65535.0
    scale = ""
    if task in ("flat", "science"):  # Siril's flat is over its mean, ccdflow's over its median
        ratio = np.median(ours) / np.median(theirs)
        theirs *= ratio
        scale = f" (Siril's scaled by {ratio:.4g})"
    edge = 8  # Siril and ccdflow treat the outermost rows alike, but skip them to compare the body
    diff = (ours - theirs)[edge:-edge, edge:-edge]
    robust = 1.4826 * np.median(np.abs(diff - np.median(diff)))
    return (f"{task}{scale}: diff mean {diff.mean():+.3g}, std {diff.std():.3g}, robust std {robust:.3g}, "
            f"|max| {np.abs(diff).max():.3g}; ccdflow's stated noise {noise:.3g} "
            f"(robust std/noise {robust / noise:.2f})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=2048)
    parser.add_argument("--n", type=int, default=20, help="biases, flats and science frames")
    parser.add_argument("--n-dark", type=int, default=10)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--tasks", default="bias,dark,flat,science")
    parser.add_argument("--baseline", metavar="DIR",
                        help="another ccdflow checkout (e.g. `git archive` of a commit) run as a third "
                             "contender, 'ccdflow@baseline', for before/after in the same run")
    parser.add_argument("--floor", action="store_true",
                        help="add 'python floor' (bench/floor_python.py): a numba tool's start-up and "
                             "the inputs' and master's I/O for the masters, plain numpy calibration "
                             "and the bare I/O ('i/o floor') for the science frames")
    parser.add_argument("--cold-memory", action="store_true",
                        help="do not touch and free 2 GiB before each run (see 'Warm memory')")
    args = parser.parse_args()
    global warm_memory
    warm_memory = not args.cold_memory
    if shutil.which("siril-cli") is None:
        print("siril-cli not found: install Siril (Debian/Ubuntu: apt-get install -y siril; "
              "see https://siril.org/download/) and run again. Skipped.")
        return
    version = subprocess.run(["siril-cli", "--version"], capture_output=True, text=True).stdout.strip()
    tasks = args.tasks.split(",")
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        root = Path(tmp)
        raw = simulate(root / "raw", args.size, args.n, args.n_dark)
        contenders: dict[str, Any] = {"siril": siril_task, "ccdflow": ccdflow_task}
        if args.baseline:
            contenders["ccdflow@baseline"] = functools.partial(ccdflow_task, pythonpath=args.baseline)
        masters: dict[str, dict[str, Path]] = {c: {} for c in contenders}
        if args.floor:  # last, with ccdflow's masters (the same dict)
            contenders["python floor"] = floor_task
            masters["python floor"] = masters["ccdflow"]
            contenders["i/o floor"] = io_floor_task  # science only
            masters["i/o floor"] = {}
        runs: dict[tuple[str, str], list[dict[str, float]]] = {}
        notes = []
        for r in range(args.repeat):
            for task in tasks:  # interleaved, task by task, round by round
                work = {c: root / f"{c}-{task}" for c in contenders}
                # the order rotates each round: a process started right after another's large
                # free pays more for its fresh pages on this VM (~0.3 s on a 3 s master), so no
                # contender always follows the same one ("python floor" stays last: it uses
                # ccdflow's masters, made in round 0)
                order = [c for c in contenders if c not in FLOORS]
                k = r % len(order)
                for contender in [*order[k:], *order[:k], *[c for c in contenders if c not in order]]:
                    if contender == "i/o floor" and task != "science":
                        continue
                    runs.setdefault((task, contender), []).append(
                        contenders[contender](task, raw, work[contender], masters[contender]))
                if r == 0:
                    notes.append(agreement(task, work, masters["siril"].get("bias")))
                    if task != "science":
                        for c in order:
                            keep = root / f"{c}-master-{task}.fits"
                            shutil.copy(work[c] / "master.fits", keep)
                            masters[c][task] = keep
    print(f"\n{version}; frames {args.size}x{args.size}, N={args.n} (darks {args.n_dark}); medians of "
          f"{args.repeat} interleaved runs, memory {'cold' if args.cold_memory else 'warm'}; load "
          "average before/after: see uptime\n")
    print("| task | contender | wall s | CPU s | peak RSS MiB | frames/s |")
    print("|---|---|---|---|---|---|")
    med = {}
    for (task, contender), rs in runs.items():
        m = {k: statistics.median(x[k] for x in rs) for k in ("wall", "cpu", "rss")}
        med[task, contender] = m
        n = args.n_dark if task == "dark" else args.n
        fps = f"{n / m['wall']:.2f}" if task == "science" else ""
        print(f"| {task} | {contender} | {m['wall']:.2f} | {m['cpu']:.2f} | {m['rss']:.0f} | {fps} |")
    print("\nratios to Siril (below 1: ccdflow better)")
    for task in tasks:
        b = med[task, "siril"]
        for c in [c for c in contenders if c != "siril" and (task, c) in med]:
            a = med[task, c]
            print(f"- {task}, {c}: wall {a['wall'] / b['wall']:.2f}, CPU {a['cpu'] / b['cpu']:.2f}, "
                  f"peak RSS {a['rss'] / b['rss']:.2f}")
    print("\nagreement\n" + "\n".join(f"- {n}" for n in notes))


if __name__ == "__main__":
    main()

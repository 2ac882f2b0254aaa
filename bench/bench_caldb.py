"""caldb benchmark: batch ingest rate, best() latency on 100,000 records, `caldb best` wall time.

A script, not a test. It builds one caldb per backend (a SQLite file in a temporary folder, a
throwaway database on the local PostgreSQL server) from synthetic master records with a
realistic spread: five instruments (one an 8-chip mosaic), several binnings, readout modes,
filters and dark exposure times, detector temperatures around seasonal set points, one night of
calibrations after another for about three years, 1 % of the masters marked bad. Then it asks
best() for 2,000 random science frames through the Python API, and times the
``ccdflow caldb best --type dark FILE --caldb URL --json`` command as a subprocess.

    python bench/bench_caldb.py [--records 100000] [--frames 2000] [--backends sqlite,postgres]
"""

from __future__ import annotations

import argparse
import contextlib
import getpass
import hashlib
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
from astropy.io import fits
from sqlalchemy import text

from ccdflow.caldb import CalDB, NoCalibrationError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.plugins import get_plugin_manager

START = datetime(2023, 11, 1)


@dataclass(frozen=True)
class Instrument:
    name: str
    detectors: tuple[str, ...]
    modes: tuple[tuple[str, str], ...]  # (binning, readout mode) pairs in use
    raw: tuple[int, int]  # unbinned raw (ny, nx), overscan included
    overscan: int
    filters: tuple[str, ...]
    flats_per_night: int
    dark_exptimes: tuple[float, ...]  # () when the instrument takes no darks
    setpoint: float  # detector temperature, C
    seasonal: bool = False  # a thermo-electric camera run warmer in summer
    duty: float = 0.85  # fraction of nights with calibrations

    def raw_shape(self, binning: str) -> str:
        bx, by = (int(v) for v in binning.split("x"))
        return f"{self.raw[0] // by}x{self.raw[1] // bx}"

    def shape(self, binning: str) -> str:
        bx, by = (int(v) for v in binning.split("x"))
        return f"{self.raw[0] // by}x{(self.raw[1] - self.overscan) // bx}"

    def temperature(self, night: datetime) -> float:
        if not self.seasonal:
            return self.setpoint
        return self.setpoint + (10.0 if night.month in (6, 7, 8) else 5.0 if night.month in (5, 9) else 0)


INSTRUMENTS = (
    Instrument("EFOSC2", ("ccd40",), (("2x2", "normal"), ("1x1", "fast")), (2048, 2060), 12,
               ("U640", "B639", "V641", "R642", "i705", "g782", "r784"), 4, (), -120.0),
    Instrument("WFC", tuple(f"ccd{i}" for i in range(1, 9)), (("1x1", "slow"),), (4096, 2098), 50,
               ("u", "g", "r", "i", "z"), 5, (60.0,), -100.0, duty=0.9),
    Instrument("SBIG", ("default",), (("1x1", "default"), ("2x2", "default"), ("3x3", "default")),
               (2048, 3072), 0, ("L", "R", "G", "B", "Ha", "OIII"), 4,
               (10.0, 30.0, 60.0, 120.0, 300.0, 600.0), -25.0, seasonal=True, duty=0.7),
    Instrument("SPEC", ("blue", "red"), (("1x1", "slow"), ("1x2", "fast")), (2048, 4196), 100,
               ("open",), 1, (900.0,), -110.0),
    Instrument("generic", ("default",), (("1x1", "default"), ("2x2", "default")), (512, 544), 32,
               ("B", "V", "R", "I"), 3, (30.0, 60.0, 300.0), -20.0, seasonal=True),
)
KINDS = {"bias": 0.0, "dark": None, "flat": None}


def _record(rng: random.Random, inst: Instrument, det: str, binning: str, mode: str, kind: str,
            when: datetime, serial: int, **extra) -> dict:
    n = rng.randint(5, 15)
    temp = inst.temperature(when) + rng.gauss(0, 0.25) + (6.0 if rng.random() < 0.02 else 0.0)
    sha = hashlib.sha256(f"bench-{serial}".encode()).hexdigest()
    stats = {"median": rng.gauss(300, 5), "noise": rng.gauss(4, 0.2)}
    if kind == "dark":
        stats["dark_rate"] = abs(rng.gauss(0.002, 0.0005))
    return dict(
        type=kind, instrument=inst.name, detector=det, binning=binning, readout_mode=mode,
        raw_shape=inst.raw_shape(binning), shape=inst.shape(binning), filter=None,
        exposure_time=0.0, temperature=round(temp, 2), temperature_spread=round(abs(rng.gauss(0.1, 0.05)), 3),
        obs_time=when, obs_start=when - timedelta(minutes=n), obs_end=when + timedelta(minutes=n),
        n_combined=n, software_version="0.1.0", config_hash=f"{rng.getrandbits(64):016x}", stats=stats,
        path=f"/archive/{inst.name}/{when:%Y%m%d}/{kind}_{det}_{binning}_{serial}.fits", sha256=sha,
        inputs=[(f"{inst.name}_{when:%Y%m%dT%H%M}_{k:03d}.fits", f"{rng.getrandbits(256):064x}")
                for k in range(n)],
    ) | extra


def make_records(n: int, seed: int = 1) -> list[dict]:
    """One night of calibrations after another until there are ``n`` masters."""
    rng, out, night = random.Random(seed), [], START
    while len(out) < n:
        for inst in INSTRUMENTS:
            if rng.random() > inst.duty:
                continue
            modes = [m for i, m in enumerate(inst.modes) if i == 0 or rng.random() < 0.4]
            for (binning, mode), det in ((m, d) for m in modes for d in inst.detectors):
                dusk = night + timedelta(hours=17 + rng.random())
                out.append(_record(rng, inst, det, binning, mode, "bias", dusk, len(out)))
                for exp in inst.dark_exptimes:
                    if rng.random() < 0.8:
                        when = night + timedelta(hours=12 + 3 * rng.random())
                        out.append(_record(rng, inst, det, binning, mode, "dark", when, len(out),
                                           exposure_time=exp))
                for filt in rng.sample(inst.filters, min(inst.flats_per_night, len(inst.filters))):
                    when = night + timedelta(hours=rng.choice((19, 30)) + rng.random())
                    out.append(_record(rng, inst, det, binning, mode, "flat", when, len(out),
                                       filter=filt, exposure_time=round(rng.uniform(1, 30), 1)))
                if night.day == 1:
                    out.append(_record(rng, inst, det, binning, mode, "bpm", dusk, len(out)))
        night += timedelta(days=1)
    return out[:n]


def make_frames(n: int, end: datetime, seed: int = 2) -> list[tuple[str, FrameMeta]]:
    """(calibration type, science frame) pairs drawn like a night's reduction asks for them.

    3 % use a binning without calibrations, so best() also explains some misses.
    """
    rng, out = random.Random(seed), []
    span = (end - START).total_seconds()
    while len(out) < n:
        inst = rng.choice(INSTRUMENTS)
        binning, mode = rng.choice(inst.modes)
        if rng.random() < 0.03:  # now and then a binning nobody took calibrations for: a miss
            binning = "4x4"
        when = START + timedelta(seconds=rng.uniform(0, span))
        kind = rng.choice([k for k in KINDS if k != "dark" or inst.dark_exptimes])
        exp = rng.choice(inst.dark_exptimes + (5.0, 45.0, 200.0)) if inst.dark_exptimes else 60.0
        bx, by = (int(v) for v in binning.split("x"))
        meta = FrameMeta(
            path=f"{inst.name}_{len(out)}.fits", frame_type="science", instrument=inst.name,
            detector=rng.choice(inst.detectors), exposure_time=exp, filter=rng.choice(inst.filters),
            date_obs=when.replace(tzinfo=UTC), temperature=inst.temperature(when) + rng.gauss(0, 0.4),
            binning=(bx, by), readout_mode=mode,
            shape=tuple(int(v) for v in inst.raw_shape(binning).split("x")),
        )
        out.append((kind, meta))
    return out


@contextlib.contextmanager
def postgres_database() -> Iterator[str]:
    """A throwaway database on the local server (trust auth), dropped afterwards."""
    import psycopg

    for user in dict.fromkeys([getpass.getuser(), "postgres"]):
        try:
            psycopg.connect(host="127.0.0.1", user=user, dbname="test", connect_timeout=3).close()
            break
        except psycopg.Error:
            continue
    else:
        raise RuntimeError("no PostgreSQL server answers at 127.0.0.1:5432 (database test)")
    name = f"ccdflow_bench_{uuid.uuid4().hex[:8]}"
    admin = dict(host="127.0.0.1", user=user, dbname="test", autocommit=True)
    with psycopg.connect(**admin) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg://{user}@127.0.0.1:5432/{name}"
    finally:
        with psycopg.connect(**admin) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def ingest(url: str, records: list[dict]) -> dict:
    db = CalDB.create(url)
    t0 = time.perf_counter()
    results = db.add_records(records, batch_size=1000)
    seconds = time.perf_counter() - t0
    assert sum(r.created for r in results) == len(records)
    t0 = time.perf_counter()
    again = db.add_records(records[:10_000], batch_size=1000)
    known_seconds = time.perf_counter() - t0
    assert not any(r.created for r in again)
    with db.sessions.writer.begin() as conn:  # 1 % of the masters were marked bad
        conn.execute(text("UPDATE calibration SET quality = 'bad', quality_reason = 'bench' "
                          "WHERE id % 97 = 0"))
    if url.startswith("postgresql"):  # what autovacuum does after a bulk load; SQLite needs none
        with db.sessions.writer.connect() as conn:
            conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("VACUUM ANALYZE")
    db.close()
    return {"ingest_rate": len(records) / seconds, "known_rate": len(again) / known_seconds}


def time_best(url: str, frames: list[tuple[str, FrameMeta]]) -> dict:
    rules = get_plugin_manager().instruments["generic"].caldb
    db = CalDB(url)
    for kind, meta in frames[:50]:  # warm the connection pool and caches
        with contextlib.suppress(NoCalibrationError):
            db.best(kind, meta, rules[kind])
    times, found, candidates = [], [], []
    for kind, meta in frames:
        t0 = time.perf_counter()
        try:
            _, receipt = db.best(kind, meta, rules[kind])
            found.append(True)
        except NoCalibrationError as exc:
            receipt = exc.receipt
            found.append(False)
        times.append(time.perf_counter() - t0)
        candidates.append(len(receipt.candidates))
    db.close()
    times_ms, found = np.array(times) * 1e3, np.array(found)
    return {"median_ms": float(np.median(times_ms)), "p99_ms": float(np.percentile(times_ms, 99)),
            "found": found.mean(), "candidates": float(np.median(candidates)),
            "miss_ms": float(np.median(times_ms[~found])) if (~found).any() else float("nan")}


def cli_available() -> bool:
    done = subprocess.run([sys.executable, "-m", "ccdflow", "caldb", "best", "--help"],
                          capture_output=True)
    return done.returncode == 0


def time_cli(url: str, workdir: Path, end: datetime, runs: int = 7) -> float:
    """Median wall time of `ccdflow caldb best --type dark FILE --caldb URL --json`."""
    when = START + (end - START) / 2
    generic = next(i for i in INSTRUMENTS if i.name == "generic")
    header = fits.Header({"IMAGETYP": "Light Frame", "EXPTIME": 60.0, "FILTER": "V",
                          "DATE-OBS": when.isoformat(timespec="seconds"),
                          "CCD-TEMP": generic.temperature(when) - 0.1, "XBINNING": 1, "YBINNING": 1})
    frame = workdir / "science.fits"
    fits.writeto(frame, np.zeros((512, 544), np.int16), header, overwrite=True)
    command = ["ccdflow", "caldb", "best", "--type", "dark", str(frame), "--caldb", url, "--json"]
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        done = subprocess.run(command, capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed:\n{done.stderr}{done.stdout[-2000:]}")
    return statistics.median(walls)


def time_startup(runs: int = 7) -> float:
    """Median wall time of `ccdflow --version`: Python start-up and ccdflow's imports."""
    walls = []
    for _ in range(runs):
        t0 = time.perf_counter()
        subprocess.run(["ccdflow", "--version"], capture_output=True, check=True)
        walls.append(time.perf_counter() - t0)
    return statistics.median(walls)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--frames", type=int, default=2_000)
    parser.add_argument("--backends", default="sqlite,postgres")
    args = parser.parse_args()

    records = make_records(args.records)
    end = max(r["obs_time"] for r in records)
    frames = make_frames(args.frames, end)
    print(f"{len(records)} records from {START:%Y-%m-%d} to {end:%Y-%m-%d}; {len(frames)} frames",
          file=sys.stderr)
    with_cli = cli_available()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for backend in args.backends.split(","):
            place = (contextlib.nullcontext(f"sqlite:///{tmp}/bench.sqlite") if backend == "sqlite"
                     else postgres_database())
            with place as url:
                result = {"backend": backend} | ingest(url, records) | time_best(url, frames)
                result["cli_s"] = time_cli(url, Path(tmp), end) if with_cli else None
                rows.append(result)
                print(result, file=sys.stderr)
    startup = time_startup()
    print(f"\n{len(records):,} records, {len(frames):,} frames; `ccdflow --version` takes "
          f"{startup:.2f} s\n")
    print("| backend | batch ingest | re-ingest (known) | best() median | best() p99 | found "
          "| median of misses | candidates (median) | `caldb best` wall |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        cli = f"{r['cli_s']:.2f} s" if r["cli_s"] is not None else "skipped: no `caldb` CLI group"
        print(f"| {r['backend']} | {r['ingest_rate']:,.0f} rec/s | {r['known_rate']:,.0f} rec/s "
              f"| {r['median_ms']:.2f} ms | {r['p99_ms']:.2f} ms | {r['found']:.1%} "
              f"| {r['miss_ms']:.1f} ms | {r['candidates']:.0f} | {cli} |")


if __name__ == "__main__":
    main()

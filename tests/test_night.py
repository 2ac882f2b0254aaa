"""`ccdflow night` end to end on simulated nights: products, provenance, ledger, resume, Dask."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.caldb import CalDB
from ccdflow.caldb.ledger import product_count
from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(n_science=3)  # 6 science frames, 5 bias, 16 darks, 6 flats


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("night"), SPEC).raw_dir


def night(*args: str, check: int | None = 0, timeout: float = 300) -> subprocess.CompletedProcess:
    """Run the real console script, as a user would."""
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", *args], capture_output=True,
                          text=True, timeout=timeout)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def summary(proc: subprocess.CompletedProcess) -> dict:
    return json.loads(proc.stdout)


def pixels(path: Path) -> dict[str, np.ndarray]:
    with fits.open(path) as hdul:
        return {name: hdul[name].data.copy() for name in ("SCI", "UNCERT", "MASK")}


def test_night_writes_masters_products_provenance_and_report(raw, tmp_path):
    out, caldb = tmp_path / "out", tmp_path / "caldb.sqlite"
    result = summary(night(str(raw), "--out", str(out), "--caldb", str(caldb), "--workers", "1", "--json"))
    assert result["counts"]["science"] == {"reduced": 6}
    assert result["counts"]["masters"] == {"built": 8}  # 1 bias, 2x2 darks, 2 flats, 1 bpm
    reduced = sorted((out / "reduced").glob("*.fits"))
    assert len(reduced) == 6
    header = fits.getheader(reduced[0])
    for card in ("CF_RAW", "CF_RAWS", "CF_BIASF", "CF_BIASS", "CF_BIASI", "CF_DARKF", "CF_DARKI",
                 "CF_FLATF", "CF_FLATI", "CF_BIADT", "CF_DARSC", "CF_VERS", "CF_CHASH", "CF_BIAS",
                 "CF_FLAT"):
        assert card in header, card
    assert header["CF_FLAT"] == "DONE"
    db = CalDB(str(caldb))
    assert product_count(db) == 6
    assert {r["type"] for r in db.list()} == {"bias", "dark", "flat", "bpm"}
    assert header["CF_BPM"] == "DONE" and "CF_BPMI" in header
    db.close()
    report = json.loads((out / "report.json").read_text())
    assert len(report["science"]) == 6 and all(s["calibrations"]["flat"]["name"] for s in report["science"])
    html = (out / "report.html").read_text()
    images = [p for p in report["quicklooks"].values()] + list(report["history_plots"].values())
    assert len(images) >= 7 + 1 and all((out / p).is_file() and p in html for p in images)
    assert "configs" in (out / "config.yaml").read_text()


def test_rerun_does_no_work_and_a_new_parameter_redoes_every_frame(raw, tmp_path):
    out, caldb = tmp_path / "out", str(tmp_path / "caldb.sqlite")
    night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json")
    mtimes = {p: p.stat().st_mtime_ns for p in (out / "reduced").glob("*.fits")}
    keys = ("median", "noise", "clip", "assumed", "flagged")

    def said() -> dict[str, dict]:  # what the report says of each master
        masters = json.loads((out / "report.json").read_text())["masters"]
        return {m["name"]: {k: m.get(k) for k in keys} for m in masters}

    first = said()
    again = summary(night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json"))
    assert again["counts"]["science"] == {"up-to-date": 6}
    assert again["counts"]["masters"] == {"up-to-date": 8}
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    # a master found built is summarised as when it was built (the report, the demo's table)
    assert said() == first and all(v["median"] is not None for n, v in first.items() if "_bpm_" not in n)
    changed = summary(night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json",
                            "-p", "flat.min_value=0.3"))
    assert changed["counts"]["science"] == {"reduced": 6}
    db = CalDB(caldb)
    assert product_count(db) == 6  # replaced, not duplicated
    db.close()


def test_a_master_marked_bad_re_reduces_exactly_the_frames_that_used_it(raw, tmp_path):
    # Every 60 s frame takes the 120 s dark scaled x0.5 (it adds the least noise); a copy
    # labelled 30 s takes the 30 s dark exactly, so marking the 120 s dark bad leaves one out.
    raw = shutil.copytree(raw, tmp_path / "raw")
    short = raw / "n1_sci_V_030s.fits"
    with fits.open(sorted(raw.glob("*sci_V*"))[0]) as hdul:
        hdul[0].header["EXPTIME"] = 30.0
        hdul.writeto(short)
    out, caldb = tmp_path / "out", str(tmp_path / "caldb.sqlite")
    first = json.loads((night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json"),
                        out / "report.json")[1].read_text())
    used = {s["raw"]: s["calibrations"]["dark"]["id"] for s in first["science"]}
    victim = used[sorted(p for p in used if p != str(short))[0]]
    affected = {raw_path for raw_path, dark in used.items() if dark == victim}
    assert 0 < len(affected) < len(used)
    db = CalDB(caldb)
    db.mark_bad(victim, "light leak", who="test")
    db.close()
    stale = subprocess.run([sys.executable, "-m", "ccdflow", "caldb", "stale", "--caldb", caldb, "--json"],
                           capture_output=True, text=True, timeout=120)
    assert stale.returncode == 0, stale.stderr
    assert {Path(s["path"]).name for s in json.loads(stale.stdout)} == {Path(a).name for a in affected}
    redo = summary(night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json",
                         "--redo-stale"))
    assert redo["counts"]["science"] == {"reduced": len(affected)}
    report = json.loads((out / "report.json").read_text())
    assert all(s["calibrations"]["dark"]["id"] != victim for s in report["science"])
    after = summary(night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json"))
    assert after["counts"]["science"] == {"up-to-date": len(used)}


def test_bad_files_are_reported_and_never_stop_the_night(raw, tmp_path):
    rawdir = tmp_path / "raw"
    shutil.copytree(raw, rawdir)
    science = sorted(rawdir.glob("*sci*"))
    (rawdir / "garbage.fits").write_bytes(b"not a fits file at all" * 100)
    data = science[0].read_bytes()
    (rawdir / "truncated.fits").write_bytes(data[: len(data) // 3])
    with fits.open(science[1], mode="update") as hdul:  # a filter nobody took flats in
        hdul[0].header["FILTER"] = "Halpha"
    before = {p.name: p.read_bytes() for p in rawdir.iterdir()}
    proc = night(str(rawdir), "--out", str(tmp_path / "out"), "--caldb", str(tmp_path / "c.sqlite"),
                 "--workers", "1", "--json", check=1)
    result = summary(proc)
    assert result["counts"]["science"] == {"reduced": 5, "failed": 1}
    (failed,) = result["failed"]
    assert Path(failed["raw"]).name == science[1].name and "flat" in failed["reason"]
    assert "Halpha" in failed["reason"]
    reasons = {Path(u["path"]).name: u["reason"] for u in result["unknown"]}
    assert set(reasons) == {"garbage.fits", "truncated.fits"} and all(reasons.values())
    assert {p.name: p.read_bytes() for p in rawdir.iterdir()} == before  # raw files untouched


def test_killed_night_resumes_with_nothing_missing_or_duplicated(raw, tmp_path):
    out, caldb = tmp_path / "out", str(tmp_path / "caldb.sqlite")
    proc = subprocess.Popen([sys.executable, "-m", "ccdflow", "night", str(raw), "--out", str(out),
                             "--caldb", caldb, "--workers", "1", "--json"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "reduced").glob("*.fits")):
        time.sleep(0.02)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    done_before = len(list((out / "reduced").glob("*.fits")))
    assert done_before < 6, "the night finished before it could be killed; use more frames"
    result = summary(night(str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1", "--json"))
    assert sum(result["counts"]["science"].values()) == 6
    assert not [p for p in out.rglob("*") if p.name.startswith(".")]  # no temporary leftovers
    db = CalDB(caldb)
    assert product_count(db) == 6
    db.close()
    for path in (out / "reduced").glob("*.fits"):
        assert np.isfinite(pixels(path)["SCI"]).any()


def _start_cluster(tmp_path: Path) -> tuple[str, list[subprocess.Popen]]:
    """A scheduler and two single-threaded workers as separate processes on loopback."""
    file = tmp_path / "scheduler.json"
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host",
                               "127.0.0.1", "--port", "0", "--no-dashboard", "--scheduler-file", str(file)],
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)]
    deadline = time.monotonic() + 60
    while not file.exists() and time.monotonic() < deadline:
        time.sleep(0.1)
    address = json.loads(file.read_text())["address"]
    for _ in range(2):
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
             "--nworkers", "1", "--no-dashboard", "--host", "127.0.0.1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
    from distributed import Client

    with Client(address, timeout="30s") as client:
        client.wait_for_workers(2, timeout=60)
    return address, procs


def test_separate_scheduler_and_workers_with_postgres_equal_the_serial_run(raw, tmp_path, postgres_url):
    serial_out = tmp_path / "serial"
    night(str(raw), "--out", str(serial_out), "--caldb", str(tmp_path / "serial.sqlite"), "--workers", "1",
          "--json")
    address, procs = _start_cluster(tmp_path)
    try:
        parallel_out = tmp_path / "parallel"
        result = summary(night(str(raw), "--out", str(parallel_out), "--caldb", postgres_url,
                               "--scheduler", address, "--json"))
    finally:
        for proc in procs[::-1]:
            proc.terminate()
        for proc in procs:
            proc.wait(timeout=30)
    assert result["counts"]["science"] == {"reduced": 6}
    for path in sorted((serial_out / "reduced").glob("*.fits")):
        a, b = pixels(path), pixels(parallel_out / "reduced" / path.name)
        for name in a:
            assert np.array_equal(a[name], b[name]), f"{path.name} {name} differs"
    db = CalDB(postgres_url)
    assert product_count(db) == 6
    db.close()


def test_local_cluster_workers_equal_the_serial_run(raw, tmp_path):
    serial, parallel = tmp_path / "serial", tmp_path / "parallel"
    night(str(raw), "--out", str(serial), "--caldb", str(tmp_path / "s.sqlite"), "--workers", "1", "--json")
    result = summary(night(str(raw), "--out", str(parallel), "--caldb", str(tmp_path / "p.sqlite"),
                           "--workers", "2", "--json"))
    assert result["counts"]["science"] == {"reduced": 6}
    for path in sorted((serial / "reduced").glob("*.fits")):
        a, b = pixels(path), pixels(parallel / "reduced" / path.name)
        assert all(np.array_equal(a[k], b[k]) for k in a), path.name


def test_configuration_error_exits_2_before_any_work(raw, tmp_path):
    proc = night(str(raw), "--out", str(tmp_path / "out"), "--caldb", str(tmp_path / "c.sqlite"),
                 "-p", "flat.no_such_param=1", check=2)
    assert "no_such_param" in proc.stderr
    assert not (tmp_path / "out").exists()

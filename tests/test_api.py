"""The Python API (``import ccdflow``) and `ccdflow reduce` against the night: one tiny simulated
night reduced by `ccdflow night`'s pipeline, then the same science frame reduced by
``ccdflow.reduce_frame`` and by `ccdflow reduce`, which must give the night's product."""

from __future__ import annotations

import json
import logging
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
from astropy.nddata import CCDData

import ccdflow
from ccdflow.framework.engine.errors import ConfigError, UnprocessableInputError
from ccdflow.framework.io.fitsio import read_product

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    from ccdflow.testing.night import reduce_simulated_night, simulated_spec

    return reduce_simulated_night(tmp_path_factory.mktemp("api"), simulated_spec())


def science_raw(night) -> Path:
    return next(night.raw_dir.glob("*_sci_*.fits"))


def provenance(header: fits.Header) -> dict[str, object]:
    """Every ccdflow card and the HISTORY: what says how a product was made."""
    cards = {k: header[k] for k in header if k.startswith("CF_")}
    return {**cards, "HISTORY": [str(h) for h in header.get("HISTORY", [])]}


def same_product(a: CCDData, b: CCDData) -> None:
    assert np.array_equal(a.data, b.data, equal_nan=True)
    assert np.array_equal(a.uncertainty.array, b.uncertainty.array, equal_nan=True)
    assert np.array_equal(a.flags, b.flags)
    assert provenance(a.header) == provenance(b.header)


def tree(folder: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_import_is_light_and_lists_the_api():
    code = ("import sys, ccdflow\n"
            "print(sorted(m for m in ('astropy', 'numpy', 'pydantic', 'sqlalchemy') if m in sys.modules))\n"
            "print(dir(ccdflow))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "PYTHONPATH": str(ROOT)}).stdout.splitlines()
    assert out[0] == "[]"
    for name in ("CalDB", "build_master", "reduce_frame", "run_night"):
        assert name in out[1]
    with pytest.raises(AttributeError, match="no attribute 'reduce'"):
        ccdflow.reduce  # noqa: B018


def test_reduce_frame_with_the_caldb_is_the_nights_product_and_writes_nothing(night):
    before = tree(night.out.parent)
    product = ccdflow.reduce_frame(science_raw(night), caldb=night.caldb_url)
    assert tree(night.out.parent) == before  # no file written, none touched, no ledger row
    same_product(product, read_product(night.products[0]))
    assert str(product.unit) == "electron"
    assert product.header["CF_BIASI"] == night.master("bias")["caldb_id"]


def test_a_given_file_the_caldb_knows_is_pinned_and_recorded_by_its_id(night):
    bias = night.master("bias")
    product = ccdflow.reduce_frame(science_raw(night), bias=bias["path"], caldb=night.caldb_url)
    assert product.header["CF_BIASI"] == bias["caldb_id"]
    assert np.array_equal(product.data, read_product(night.products[0]).data)


def test_calibrations_in_memory_equal_the_same_calibrations_as_files(night, tmp_path):
    """Masters built in memory by build_master, and the same masters written (out=) and given as
    paths, reduce the raw frame (given as a file or as CCDData) to the same pixels."""
    raw = night.raw_dir
    bias = ccdflow.build_master("bias", sorted(raw.glob("*_bias_*.fits")), out=tmp_path / "bias.fits")
    dark = ccdflow.build_master("dark", sorted(raw.glob("*_dark_*.fits")), bias=bias)
    ccdflow.build_master("dark", sorted(raw.glob("*_dark_*.fits")), bias=tmp_path / "bias.fits",
                         out=tmp_path / "dark.fits")
    flat = ccdflow.build_master("flat", sorted(raw.glob("*_flat_*.fits")), bias=bias, dark=dark)
    ccdflow.build_master("flat", sorted(raw.glob("*_flat_*.fits")), bias=tmp_path / "bias.fits",
                         dark=tmp_path / "dark.fits", out=tmp_path / "flat.fits")
    assert np.array_equal(dark.data, read_product(tmp_path / "dark.fits").data)
    assert dark.header["CF_BIASF"] == "in-memory"

    in_memory = ccdflow.reduce_frame(science_raw(night), bias=bias, dark=dark, flat=flat)
    as_files = ccdflow.reduce_frame(science_raw(night), bias=tmp_path / "bias.fits",
                                    dark=tmp_path / "dark.fits", flat=tmp_path / "flat.fits")
    with fits.open(science_raw(night)) as hdul:
        raw_ccd = CCDData(hdul[0].data, unit="adu", header=hdul[0].header)
        raw_in_memory = ccdflow.reduce_frame(raw_ccd, bias=tmp_path / "bias.fits",
                                             dark=tmp_path / "dark.fits", flat=tmp_path / "flat.fits")
    for other in (as_files, raw_in_memory):
        assert np.array_equal(in_memory.data, other.data, equal_nan=True)
        assert np.array_equal(in_memory.uncertainty.array, other.uncertainty.array)
        assert np.array_equal(in_memory.flags, other.flags)
    assert in_memory.header["CF_DARKF"] == "in-memory" and as_files.header["CF_DARKF"] == "dark.fits"
    from ccdflow.framework.builders.reduction import data_sha256

    assert in_memory.header["CF_DARKS"] == data_sha256(dark)
    assert raw_in_memory.header["CF_RAW"] == "in-memory"
    assert as_files.header["CF_RAW"] == science_raw(night).name
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bias.fits", "dark.fits", "flat.fits"]


def test_without_caldb_a_calibration_not_given_is_skipped_and_said(night, caplog):
    with caplog.at_level(logging.WARNING, "ccdflow.api"):
        product = ccdflow.reduce_frame(science_raw(night), bias=night.master("bias")["path"])
    header = product.header
    assert header["CF_BIAS"] == "DONE" and header["CF_DARK"] == "SKIPPED"
    assert header["CF_DARKN"] == "none given, and no caldb to choose one from"
    assert "no dark applied" in caplog.text and "no flat applied" in caplog.text


def test_params_override_like_p_and_unknown_names_are_refused(night):
    product = ccdflow.reduce_frame(science_raw(night), caldb=night.caldb_url,
                                   params={"cosmicray.skip": True})
    assert product.header["CF_CRAY"] == "SKIPPED"
    with pytest.raises(ConfigError, match="did you mean"):
        ccdflow.reduce_frame(science_raw(night), calibrations={"darkk": night.master("dark")["path"]})
    with pytest.raises(ConfigError, match="uses no flat"):  # a calibration given is never ignored
        ccdflow.build_master("bias", sorted(night.raw_dir.glob("*_bias_*.fits")),
                             flat=night.master("flat")["path"])


def test_a_missing_gain_is_the_named_error_not_a_default(night, tmp_path):
    raw = tmp_path / "no_gain.fits"
    shutil.copy(science_raw(night), raw)
    with fits.open(raw, mode="update") as hdul:
        for key in ("EGAIN", "GAIN"):
            hdul[0].header.remove(key, ignore_missing=True)
    with pytest.raises(UnprocessableInputError, match="gain") as caught:
        ccdflow.reduce_frame(raw, caldb=night.caldb_url)
    assert "EGAIN or GAIN" in str(caught.value)


def test_reduce_command_products_equal_the_nights_and_one_bad_file_does_not_stop_it(night, tmp_path):
    bad = tmp_path / "broken.fits"
    bad.write_bytes(b"SIMPLE  = not a FITS file")
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "reduce", str(science_raw(night)), str(bad),
                           "--out", str(out), "--caldb", night.caldb_url.removeprefix("sqlite:///")],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "failed" in proc.stderr and "broken.fits" in proc.stderr  # progress and errors
    assert "1 reduced, 1 failed" in proc.stdout  # the summary
    logged = (out / "ccdflow.log").read_text()  # the command log: one line per frame
    assert "reduced " in logged and "failed " in logged and "broken.fits" in logged
    assert "exit status 1" in logged
    product = out / "reduced" / night.products[0].name  # named as the night names it
    same_product(read_product(product), read_product(night.products[0]))
    from ccdflow.framework.io.fitsio import sha256_file

    assert sha256_file(product) == sha256_file(night.products[0])  # the very same bytes
    db = ccdflow.CalDB(night.caldb_url)
    try:  # recorded in the ledger beside the night's own product
        used = [u["path"] for u in db.used_by(night.master("flat")["caldb_id"])]
    finally:
        db.close()
    assert str(product) in used and str(night.products[0]) in used


def test_caldb_best_says_why_and_history_and_add(night, tmp_path):
    with ccdflow.CalDB(night.caldb_url) as db:
        choice = db.best(science_raw(night), "dark")
        assert choice.id == night.master("dark")["caldb_id"]
        assert "selected dark" in choice.why() and "cost" in choice.why()
        assert [p["id"] for p in db.history("bias")] == [night.master("bias")["caldb_id"]]
    with pytest.raises(Exception, match="create it with"):
        ccdflow.CalDB(tmp_path / "none.sqlite")
    with ccdflow.CalDB(tmp_path / "new.sqlite", create=True) as db:
        added = db.add(night.master("bias")["path"])
        assert added.created and db.get(added.id)["type"] == "bias"


@pytest.mark.parametrize(("args", "status", "says"), [
    (["-p", "cosmicray.nosuch=1"], 2, "configuration error"),
    (["--caldb", "missing.sqlite"], 3, "no caldb at"),
], ids=["bad-param", "no-caldb"])
def test_reduce_command_refuses_before_any_work(night, tmp_path, args, status, says):
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "reduce", str(science_raw(night)),
                           "--out", str(tmp_path / "out"), *args], capture_output=True, text=True,
                          cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert proc.returncode == status and says in proc.stderr, proc.stdout + proc.stderr
    assert not (tmp_path / "out").exists()


def reduce_run(night, tmp_path: Path, name: str, raws: list[Path], workers: int
               ) -> tuple[subprocess.CompletedProcess, dict, Path]:
    """`ccdflow reduce RAWS --json --workers N` with its own copy of the night's caldb (the same
    ledger before each run, so the same product ids)."""
    caldb = tmp_path / f"{name}.sqlite"
    shutil.copy(night.caldb_url.removeprefix("sqlite:///"), caldb)
    out = tmp_path / name
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "reduce", *map(str, raws), "--out", str(out),
                           "--caldb", str(caldb), "--json", "--workers", str(workers)],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    return proc, json.loads(proc.stdout), out


def raws_with_failures(night, folder: Path) -> list[Path]:
    """Good raw frames (later observations of the night's science frame) and three that fail:
    one of a filter without a flat (its error raised in the worker, after the read, where a
    serial run meets it), one cut short and one that is no FITS file (both refused before any
    reduction)."""
    folder.mkdir()
    raws = []
    for i, kind in enumerate(["good", "no_flat", "good", "cut", "good", "broken"]):
        raw = folder / f"{kind}_{i}.fits"
        if kind == "broken":
            raw.write_bytes(b"SIMPLE  = not a FITS file")
        else:
            with fits.open(science_raw(night)) as hdul:
                hdul[0].header["DATE-OBS"] = f"{hdul[0].header['DATE-OBS'][:14]}{10 + i}:00"
                if kind == "no_flat":
                    hdul[0].header["FILTER"] = "R"
                hdul.writeto(raw)
            if kind == "cut":
                raw.write_bytes(raw.read_bytes()[:2880 * 3])
        raws.append(raw)
    return raws


def comparable(entry: dict) -> dict:
    """A --json entry without what differs between two runs (timings, folders, tracebacks)."""
    return {k: (Path(v).name if k == "path" else v) for k, v in entry.items()
            if k not in ("seconds", "traceback", "detail")}


def logged_frames(out: Path) -> list[str]:
    """The command log's frame lines, without their times and folders."""
    lines = [line.split(" ", 1)[1] for line in (out / "ccdflow.log").read_text().splitlines()
             if ": reduced " in line or ": failed " in line]
    return [line.replace(str(out), "OUT") for line in lines]


def test_reduce_workers_make_the_serial_runs_products_entries_ledger_and_log(night, tmp_path):
    raws = raws_with_failures(night, tmp_path / "raw")
    serial, serial_json, serial_out = reduce_run(night, tmp_path, "serial", raws, 1)
    parallel, parallel_json, parallel_out = reduce_run(night, tmp_path, "parallel", raws, 2)
    for proc in (serial, parallel):
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Traceback" not in proc.stderr
    assert [comparable(e) for e in parallel_json["products"]] == \
        [comparable(e) for e in serial_json["products"]]
    assert [(Path(e["raw"]).stem, e["status"]) for e in parallel_json["products"]] == [
        ("cut_3", "failed"), ("broken_5", "failed"),  # refused when listed and scanned
        ("good_0", "reduced"), ("good_2", "reduced"), ("good_4", "reduced"),  # as products are named
        ("no_flat_1", "failed")]
    from ccdflow.framework.io.fitsio import sha256_file

    for entry in parallel_json["products"]:
        if entry["status"] == "reduced":  # the very same bytes, as the entry and ledger say
            assert sha256_file(entry["path"]) == entry["sha256"]
            assert sha256_file(serial_out / "reduced" / Path(entry["path"]).name) == entry["sha256"]
    assert logged_frames(parallel_out) == logged_frames(serial_out)
    with ccdflow.CalDB(tmp_path / "parallel.sqlite") as db:  # the rows the parent wrote, in order
        rows = [u for u in db.used_by(night.master("flat")["caldb_id"]) if str(parallel_out) in u["path"]]
    assert len(rows) == 3


def test_reduce_workers_stop_cleanly_on_sigterm(night, tmp_path):
    """SIGTERM while worker processes reduce: exit 143, one message, no traceback, no temporary
    file, no worker left running."""
    raws = []
    for i in range(40):
        raw = tmp_path / f"sci_{i:02d}.fits"
        with fits.open(science_raw(night)) as hdul:
            hdul[0].header["DATE-OBS"] = f"{hdul[0].header['DATE-OBS'][:11]}{1 + i // 60:02d}:{i % 60:02d}:00"
            hdul.writeto(raw)
        raws.append(raw)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ccdflow", "reduce", *map(str, raws), "--out", str(out),
                             "--workers", "2", "--bias", night.master("bias")["path"],
                             "-p", "cosmicray.skip=true"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.monotonic() + 60
    while not list((out / "reduced").glob("*.fits")) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.005)  # the workers are writing products
    children = subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True, text=True).stdout.split()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143, stderr
    assert "Traceback" not in stderr and "interrupted" in stderr.lower(), stderr
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]
    assert len(list((out / "reduced").glob("*.fits"))) < len(raws)  # stopped before the end
    for pid in children:
        assert not Path(f"/proc/{pid}").exists() or "zombie" in Path(f"/proc/{pid}/status").read_text()


def test_reduce_workers_a_frame_that_kills_its_worker_fails_alone(night, tmp_path, monkeypatch):
    """A frame whose worker dies (a crash, the out-of-memory killer) each time it runs is
    reported as lost; the frame that was running beside it, and every later one, is reduced."""
    from ccdflow.cli.reduce_cmd import reduce_files
    from ccdflow.framework.engine.plugins import get_plugin_manager
    from ccdflow.pipeline import single_workers
    from ccdflow.pipeline.single import Setup

    raws = []
    for i, name in enumerate(["a", "b", "c_killer", "d", "e"]):
        raw = tmp_path / f"{name}.fits"
        with fits.open(science_raw(night)) as hdul:
            hdul[0].header["DATE-OBS"] = f"{hdul[0].header['DATE-OBS'][:14]}{10 + i}:00"
            hdul.writeto(raw)
        raws.append(raw)
    made = single_workers.make_product

    def crashing(setup, raw, out, chosen):
        if "killer" in str(raw):
            os.kill(os.getpid(), signal.SIGKILL)
        return made(setup, raw, out, chosen)

    monkeypatch.setattr(single_workers, "make_product", crashing)  # the forked workers' too
    setup = Setup(get_plugin_manager(), "generic", params=("cosmicray.skip=true",),
                  given={"bias": night.master("bias")["path"]})
    entries = reduce_files(setup, tuple(raws), tmp_path / "out", True, lambda: None, 2)
    assert [(Path(e["raw"]).stem, e["status"]) for e in entries] == [
        ("a", "reduced"), ("b", "reduced"), ("c_killer", "failed"), ("d", "reduced"), ("e", "reduced")]
    assert entries[2]["error"] == "WorkerDiedError" and "died, 2 times" in entries[2]["reason"]
    assert sorted(p.name for p in (tmp_path / "out" / "reduced").iterdir()) == \
        ["a.fits", "b.fits", "d.fits", "e.fits"]

"""Calibrations never change once registered, outputs stay inside OUT, one product per raw file.

Real nights on real files and a real caldb (SQLite and PostgreSQL): re-runs with a changed
parameter, --force, a hostile DETECTOR card, equal names in subfolders, a master changed on
disk or marked bad. After every sequence `caldb verify` must be all ok and every product's
recorded calibration checksums must be the bytes of the files it names.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from ccdflow.caldb import CalDB
from ccdflow.simulator import SimulationSpec, simulate_night

SPEC = SimulationSpec(shape=(64, 64), overscan=8, n_science=1, n_bias=3, n_dark=3, n_flat=3,
                      dark_exptimes=(30.0,), dark_temperatures=(-20.0,))


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    return simulate_night(tmp_path_factory.mktemp("night"), SPEC).raw_dir


def ccdflow(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ccdflow", *args], capture_output=True, text=True,
                          timeout=300)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    return proc


def run_night(raw: Path, out: Path, caldb: str, *extra: str, check: int | None = 0) -> dict:
    proc = ccdflow("night", str(raw), "--out", str(out), "--caldb", caldb, "--workers", "1",
                   "--json", *extra, check=check)
    return json.loads(proc.stdout)


def sha(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def tree(root: Path) -> dict[str, str]:
    """Every file under ``root`` with its checksum."""
    return {str(p.relative_to(root)): sha(p) for p in sorted(root.rglob("*")) if p.is_file()}


def assert_sound(caldb: str, out: Path) -> None:
    """`caldb verify` all ok; each product's calibration cards name files with those bytes."""
    proc = ccdflow("caldb", "verify", "--caldb", caldb, "--json")
    report = json.loads(proc.stdout)
    assert report["checked"] > 0 and report["counts"]["ok"] == report["checked"], report["problems"]
    db = CalDB(caldb)
    try:
        by_id = {r["id"]: r for r in db.list(include_bad=True)}
    finally:
        db.close()
    products = sorted((out / "reduced").rglob("*.fits"))
    assert products
    for product in products:
        header = fits.getheader(product)
        for tag in ("BIAS", "DARK", "FLAT"):
            record = by_id[header[f"CF_{tag}I"]]
            assert header[f"CF_{tag}S"] == record["sha256"] == sha(record["path"]), (product, tag)
            assert header[f"CF_{tag}F"] == Path(record["path"]).name


@pytest.fixture(params=["sqlite", "postgres"])
def caldb(request, tmp_path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "caldb.sqlite")
    return request.getfixturevalue("postgres_url")


def test_reruns_never_change_a_registered_master(raw, tmp_path, caldb):
    out = tmp_path / "out"
    first = run_night(raw, out, caldb)
    assert first["counts"]["masters"] == {"built": 5}  # bias, dark, 2 flats, bpm
    before = tree(out / "masters")

    # a parameter of the flat recipe only (saturation runs on flats and science, not on bias or
    # dark): new flats and the mask made from them beside the old; bias and dark are found
    change = ("-p", "saturation.grow_columns=1")
    second = run_night(raw, out, caldb, *change)
    assert second["counts"]["masters"] == {"up-to-date": 2, "built": 3}
    after = tree(out / "masters")
    assert {k: after[k] for k in before} == before  # nothing changed, nothing removed
    assert len(after) == len(before) + 3

    # --force rebuilds everything: identical bytes are not added again, nothing is overwritten
    forced = run_night(raw, out, caldb, *change, "--force")
    assert forced["counts"]["science"] == {"reduced": 2}
    assert {k: v for k, v in tree(out / "masters").items() if k in after} == after
    assert_sound(caldb, out)

    # back to the first parameters: the first night's masters are found, not rebuilt; a step
    # parameter that no master recipe uses rebuilds no master at all
    again = run_night(raw, out, caldb, "-p", "flat.min_value=0.3")
    assert again["counts"]["masters"] == {"up-to-date": 5}
    assert again["counts"]["science"] == {"reduced": 2}
    assert_sound(caldb, out)


def test_a_changed_master_is_refused_and_a_bad_one_never_used(raw, tmp_path):
    out, caldb = tmp_path / "out", str(tmp_path / "caldb.sqlite")
    run_night(raw, out, caldb)
    db = CalDB(caldb)
    try:
        flats = [r for r in db.list() if r["type"] == "flat"]
        db.mark_bad(flats[0]["id"], "test: dome lamp flickered")
    finally:
        db.close()
    # marked bad: the re-reduction of every frame (new science parameter) never uses it
    result = run_night(raw, out, caldb, "-p", "cosmicray.sigclip=6", check=1)
    assert result["failed"]
    science = json.loads((out / "report.json").read_text())["science"]
    assert {s["status"] for s in science} == {"failed", "reduced"}
    for entry in science:
        if entry["status"] == "reduced":
            assert fits.getheader(entry["path"])["CF_FLATI"] != flats[0]["id"]
        else:
            assert "flat" in entry["reason"] and entry["error"] == "NoCalibrationError"

    # someone edits a registered master: refused by name wherever it would be applied
    bias = Path(next(r for r in CalDB(caldb).list() if r["type"] == "bias")["path"])
    with fits.open(bias, mode="update") as hdul:
        hdul[0].header["OBSERVER"] = "tampered"
    result = run_night(raw, out, caldb, "-p", "cosmicray.sigclip=7", check=1)
    assert result["failed"] and all(s["error"] == "CalibrationChangedError" for s in result["failed"]
                                    if "flat" not in s["reason"]), result["failed"]
    failed_masters = [m for m in json.loads((out / "report.json").read_text())["masters"]
                      if m["status"] == "failed"]
    assert [m["type"] for m in failed_masters] == ["bias"]
    assert "changed" in failed_masters[0]["reason"]
    assert Path(bias).read_bytes().count(b"tampered") == 1  # nothing rebuilt over it


def test_header_values_never_escape_out(raw, tmp_path):
    hostile = tmp_path / "raw"
    shutil.copytree(raw, hostile)
    for path in hostile.glob("*.fits"):
        with fits.open(path, mode="update") as hdul:
            hdul[0].header["DETECTOR"] = "x/../../../escaped"
            hdul[0].header["READOUTM"] = "../../" + "r" * 60  # names up to 68 characters pass
    before_raw = tree(hostile)
    out = tmp_path / "out"
    result = run_night(hostile, out, str(out / "caldb.sqlite"))
    assert result["counts"]["science"] == {"reduced": 2}
    outside = {p for p in tmp_path.rglob("*") if not p.is_relative_to(out)
               and not p.is_relative_to(hostile)}
    assert outside == set(), outside
    assert tree(hostile) == before_raw
    names = sorted(p.name for p in (out / "masters").glob("*.fits"))
    assert len(names) == 5 and all(len(n) < 255 and "/" not in n for n in names)
    header = fits.getheader(next((out / "reduced").glob("*.fits")))
    assert header["DETECTOR"] == "x/../../../escaped"  # the value itself is kept, in full
    assert_sound(str(out / "caldb.sqlite"), out)


def test_equal_names_in_subfolders_give_distinct_products(raw, tmp_path):
    nested = tmp_path / "raw"
    shutil.copytree(raw, nested / "a")
    science = sorted((nested / "a").glob("*sci*"))
    (nested / "b").mkdir()
    for path in science:  # same names, other pixels
        with fits.open(path) as hdul:
            hdul[0].data = hdul[0].data + 7
            hdul.writeto(nested / "b" / path.name)
    gz = nested / "b" / (science[0].name + ".gz")
    import gzip

    gz.write_bytes(gzip.compress((nested / "b" / science[0].name).read_bytes()))
    out = tmp_path / "out"
    result = run_night(nested, out, str(tmp_path / "caldb.sqlite"))
    assert result["counts"]["science"] == {"reduced": 5}
    products = sorted(str(p.relative_to(out / "reduced")) for p in (out / "reduced").rglob("*.fits"))
    assert len(products) == 5 and all(p.endswith(".fits") for p in products)
    assert {p.split("/")[0] for p in products} == {"a", "b"}
    again = run_night(nested, out, str(tmp_path / "caldb.sqlite"))
    assert again["counts"]["science"] == {"up-to-date": 5}  # not redone forever


def test_checksum_and_pixels_come_from_one_read(raw, tmp_path, monkeypatch):
    """A raw file rewritten while the night reads it: the product records the checksum of the
    bytes it reduced, whatever the file holds afterwards."""
    import ccdflow.framework.io.fitsio as fitsio
    from ccdflow.framework.builders.reduction import reduce_frame  # noqa: F401 (imports fitsio users)

    calls = []
    real = fitsio.read_file_hashed

    def read_then_rewrite(path):
        content, digest = real(path)
        if "sci" in Path(path).name:
            Path(path).write_bytes(b"")  # the camera software truncates it right after our read
            calls.append((path, digest))
        return content, digest

    local = tmp_path / "raw"
    shutil.copytree(raw, local)
    out = tmp_path / "out"
    monkeypatch.setattr(fitsio, "read_file_hashed", read_then_rewrite)
    from ccdflow.pipeline.executor import SerialExecutor
    from ccdflow.pipeline.night import run_night as run
    from ccdflow.pipeline.spec import RunSpec, forget_environments

    spec = RunSpec(outdir=str(out), caldb_url=f"sqlite:///{tmp_path / 'caldb.sqlite'}")
    CalDB.create(spec.caldb_url).close()
    result = run(local, spec, SerialExecutor())
    forget_environments()
    assert [s["status"] for s in result.science] == ["reduced", "reduced"]
    for raw_path, digest in calls:
        product = next(s["path"] for s in result.science if s["raw"] == raw_path)
        assert fits.getheader(product)["CF_RAWS"] == digest != sha(raw_path)


def test_master_command_refuses_to_write_over_a_registered_master(raw, tmp_path):
    out, caldb = tmp_path / "out", str(tmp_path / "caldb.sqlite")
    run_night(raw, out, caldb)
    bias = next(p for p in (out / "masters").glob("*bias*"))
    before = sha(bias)
    proc = ccdflow("master", "bias", *map(str, sorted(raw.glob("*bias*"))), "--out", str(bias),
                   "--caldb", caldb, check=3)
    assert "registered calibrations are never written over" in proc.stderr
    assert proc.stderr.count("\n") == 1 and sha(bias) == before
    fresh = tmp_path / "bias.fits"  # any other name is fine
    ccdflow("master", "bias", *map(str, sorted(raw.glob("*bias*"))), "--out", str(fresh), "--caldb", caldb)
    assert fresh.is_file()


def test_an_out_folder_inside_rawdir_is_not_read_back_as_raw_frames(raw, tmp_path):
    local = tmp_path / "raw"
    shutil.copytree(raw, local)
    out, caldb = local / "out", str(tmp_path / "caldb.sqlite")
    first = run_night(local, out, caldb)
    again = run_night(local, out, caldb)
    assert again["counts"]["files"] == first["counts"]["files"]
    assert again["counts"]["masters"] == {"up-to-date": 5}
    assert again["counts"]["science"] == {"up-to-date": 2}

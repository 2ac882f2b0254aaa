"""Masters given by path to a master build (load_calibrations reads them side by side): each
one's error is still its own, named, and in recipe order; the master records the SHA-256 of the
bytes it read (CF_<tag>S), equal to the file's, without hashing the file again."""

from __future__ import annotations

import hashlib
import threading
import time
from pathlib import Path

import pytest

import ccdflow
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io import provenance
from ccdflow.framework.io.fitsio import read_product

# the corrupt masters below make astropy warn as it tries them
pytestmark = pytest.mark.filterwarnings("ignore::astropy.io.fits.verify.VerifyWarning")


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    from ccdflow.testing.night import reduce_simulated_night, simulated_spec

    return reduce_simulated_night(tmp_path_factory.mktemp("mcal"), simulated_spec())


def sha256(path: str | Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def raws(night, kind: str) -> list[Path]:
    return sorted(night.raw_dir.glob(f"*_{kind}_*.fits"))


def no_rehash(monkeypatch) -> None:
    def refuse(path, *args, **kwargs):
        raise AssertionError(f"{path} hashed again")

    monkeypatch.setattr(provenance, "sha256_file", refuse)


def test_a_flat_master_records_the_sha256_of_the_masters_read(night, monkeypatch):
    files = {k: night.master(k)["path"] for k in ("bias", "dark")}
    no_rehash(monkeypatch)
    flat = ccdflow.build_master("flat", raws(night, "flat"), **files)
    for kind, tag in (("bias", "BIAS"), ("dark", "DARK")):
        assert flat.header[f"CF_{tag}S"] == sha256(files[kind]) == night.master(kind)["sha256"]
        assert flat.header[f"CF_{tag}F"] == Path(files[kind]).name


def test_in_memory_masters_record_their_pixels_hash(night, monkeypatch):
    from ccdflow.framework.builders.reduction import data_sha256

    bias = read_product(night.master("bias")["path"])
    no_rehash(monkeypatch)
    dark = ccdflow.build_master("dark", raws(night, "dark"), bias=bias)
    assert dark.header["CF_BIASS"] == data_sha256(bias) and dark.header["CF_BIASF"] == "in-memory"


def test_the_nights_masters_record_the_sha256_of_their_calibrations(night):
    flat = read_product(night.master("flat")["path"])
    assert flat.header["CF_BIASS"] == sha256(night.master("bias")["path"])
    assert flat.header["CF_DARKS"] == sha256(night.master("dark")["path"])
    dark = read_product(night.master("dark")["path"])
    assert dark.header["CF_BIASS"] == sha256(night.master("bias")["path"])


def corrupt(tmp_path: Path, name: str) -> Path:
    path = tmp_path / name
    path.write_bytes(b"SIMPLE  =                    T" + b"\x00garbage" * 700)
    return path


def test_a_missing_bias_file_is_its_named_error(night, tmp_path):
    missing = tmp_path / "no_bias.fits"
    with pytest.raises(UnprocessableInputError, match="file not found") as caught:
        ccdflow.build_master("dark", raws(night, "dark"), bias=missing)
    assert str(missing) in str(caught.value)
    assert not (tmp_path / "no_bias.fits").exists()


def test_a_corrupt_bias_file_is_its_named_error(night, tmp_path):
    bad = corrupt(tmp_path, "bad_bias.fits")
    with pytest.raises(UnprocessableInputError, match="master bias cannot be read") as caught:
        ccdflow.build_master("dark", raws(night, "dark"), bias=bad)
    assert str(bad) in str(caught.value)


@pytest.mark.parametrize(("bias_bad", "dark_bad", "named"), [
    (True, False, "master bias"), (False, True, "master dark"), (True, True, "master bias"),
])
def test_errors_of_masters_loaded_side_by_side_come_in_recipe_order(night, tmp_path, bias_bad,
                                                                    dark_bad, named):
    threads_before = threading.active_count()
    bias = corrupt(tmp_path, "b.fits") if bias_bad else night.master("bias")["path"]
    dark = corrupt(tmp_path, "d.fits") if dark_bad else night.master("dark")["path"]
    with pytest.raises(UnprocessableInputError, match=f"{named} cannot be read"):
        ccdflow.build_master("flat", raws(night, "flat"), bias=bias, dark=dark)
    deadline = time.monotonic() + 5  # the loading threads end on their own, none left behind
    while threading.active_count() > threads_before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() <= threads_before


def test_a_missing_dark_with_a_good_bias_is_the_darks_error(night, tmp_path):
    with pytest.raises(UnprocessableInputError, match="file not found") as caught:
        ccdflow.build_master("flat", raws(night, "flat"), bias=night.master("bias")["path"],
                             dark=tmp_path / "gone_dark.fits")
    assert "gone_dark.fits" in str(caught.value)


def test_the_master_command_says_which_calibration_and_ends_3(night, tmp_path):
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    bad = corrupt(tmp_path, "bad_bias.fits")
    done = subprocess.run([sys.executable, "-m", "ccdflow", "master", "dark", str(night.raw_dir),
                           "--bias", str(bad), "--out", str(tmp_path / "dark.fits")],
                          capture_output=True, text=True, timeout=120,
                          env={**os.environ, "PYTHONPATH": str(root)})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "master bias cannot be read" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "dark.fits").exists()

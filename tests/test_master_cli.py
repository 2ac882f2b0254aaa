"""`ccdflow master` end to end on FITS files: explicit and caldb-chosen calibrations, --register,
--json, exit statuses, and the real EFOSC2 biases."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from ccdflow.cli import cli
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.simulator import SimulationSpec, simulate_night


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    spec = SimulationSpec(shape=(64, 64), n_bias=4, n_dark=3, dark_exptimes=(60.0,),
                          dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=0, seed=21)
    return simulate_night(tmp_path_factory.mktemp("cli"), spec).raw_dir


def run(*args: str) -> tuple[int, str]:
    result = CliRunner().invoke(cli, ["master", *args])
    return result.exit_code, result.output


def test_bias_dark_flat_bpm_with_explicit_masters(raw, tmp_path):
    code, out = run("bias", *map(str, sorted(raw.glob("*bias*"))), "--out", str(tmp_path / "b.fits"),
                    "--memory-limit", "8MB", "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["n_combined"] == 4 and summary["sha256"] == sha256_file(tmp_path / "b.fits")
    assert summary["clip"] == "sigma" and "CF_NOISE" in summary["stats"]
    code, out = run("dark", *map(str, sorted(raw.glob("*dark*"))), "--bias", str(tmp_path / "b.fits"),
                    "--out", str(tmp_path / "d.fits"))
    assert code == 0 and "wrote dark" in out, out
    code, out = run("flat", str(raw), "--bias", str(tmp_path / "b.fits"), "--dark", str(tmp_path / "d.fits"),
                    "--out", str(tmp_path / "f0.fits"), "--instrument", "generic", "--method", "mean")
    # a directory holds every type: its flats are picked, the rest counted (tests/test_master_select.py)
    assert code == 0 and "master flat: 3 frame(s) selected; left out 4 bias, 3 dark" in out, out
    code, out = run("flat", *map(str, sorted(raw.glob("*flat*"))), "--bias", str(tmp_path / "b.fits"),
                    "--dark", str(tmp_path / "d.fits"), "--out", str(tmp_path / "f.fits"))
    assert code == 0, out
    header = fits.getheader(tmp_path / "f.fits")
    assert header["CF_BIASF"] == "b.fits" and header["CF_DARKS"] == sha256_file(tmp_path / "d.fits")
    code, out = run("bpm", "--dark", str(tmp_path / "d.fits"), "--flat", str(tmp_path / "f.fits"),
                    "--out", str(tmp_path / "bpm.fits"), "--json")
    assert code == 0, out
    assert json.loads(out)["stats"]["CF_NHOT"] > 0
    assert fits.getheader(tmp_path / "bpm.fits")["CF_MTYPE"] == "bpm"


def test_calibrations_chosen_from_the_caldb_and_registered(raw, tmp_path):
    db = tmp_path / "caldb.sqlite"
    assert CliRunner().invoke(cli, ["caldb", "init", "--caldb", str(db)]).exit_code == 0
    code, out = run("bias", *map(str, sorted(raw.glob("*bias*"))), "--out", str(tmp_path / "b.fits"),
                    "--register", "--caldb", str(db), "--json")
    assert code == 0 and json.loads(out)["caldb_new"], out
    code, out = run("dark", *map(str, sorted(raw.glob("*dark*"))), "--caldb", str(db),
                    "--out", str(tmp_path / "d.fits"), "--register", "--json")
    assert code == 0, out
    summary = json.loads(out)
    bias_id = summary["calibrations"]["bias"]["caldb_id"]
    assert bias_id is not None and summary["caldb_id"] != bias_id
    assert fits.getheader(tmp_path / "d.fits")["CF_BIASI"] == bias_id


def test_errors_and_exit_statuses(raw, tmp_path):
    darks = list(map(str, sorted(raw.glob("*dark*"))))
    code, out = run("dark", *darks, "--out", str(tmp_path / "d.fits"))
    assert code == 3 and "needs a master bias: give --bias FILE or --caldb URL" in out
    code, out = run("bias", *map(str, sorted(raw.glob("*bias*"))[:2]), "--out", str(tmp_path / "b.fits"),
                    "--fallback", "refuse")
    assert code == 3 and "sigma clipping needs at least 3 frames, got 2" in out
    # by default the night's settings: a clipped mean, minmax below 3 frames (as the night)
    code, out = run("bias", *map(str, sorted(raw.glob("*bias*"))[:2]), "--out", str(tmp_path / "b2.fits"))
    assert code == 0 and "rejection fallback: minmax" in out
    assert fits.getheader(tmp_path / "b2.fits")["CF_METH"] == "mean"
    code, out = run("bias", *map(str, sorted(raw.glob("*bias*"))[:2]), "--out", str(tmp_path / "b.fits"),
                    "--fallback", "none")
    assert code == 0 and "rejection fallback: none" in out
    code, out = run("bias", *darks, "--out", str(tmp_path / "b.fits"), "-p", "overscan.nonsense=1")
    assert code == 2, out
    code, out = run("bias", *darks, "--out", str(tmp_path / "x.fits"), "--memory-limit", "lots")
    assert code == 2 and "not a size" in out
    assert not (tmp_path / "x.fits").exists()
    code, out = run("bpm", "--out", str(tmp_path / "bpm.fits"))
    assert code == 2 and "--dark MASTER_DARK and/or --flat" in out


def test_real_efosc_biases(real_data, tmp_path):
    files = sorted((real_data / "efosc-ntt").glob("EFOSC.2022-01-26T19-0*.fits.gz"))
    assert len(files) == 5
    code, out = run("bias", *map(str, files), "--out", str(tmp_path / "efosc_bias.fits"), "--json")
    assert code == 0, out
    summary = json.loads(out)
    assert summary["instrument"] == "efosc2" and summary["n_combined"] == 5
    with fits.open(tmp_path / "efosc_bias.fits") as hdul:
        data, header = hdul["SCI"].data, hdul[0].header
    assert data.shape == (1016, 1021)  # TRIMSEC [2:1022,1:1016]
    assert abs(np.median(data)) < 5  # overscan removed: the README's ~220 ADU level is gone
    assert 215 < header["CF_LEVEL"] < 230 and header["CF_BIN"] == "2x2"

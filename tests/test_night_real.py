"""`ccdflow night` on the real raw sets in ../shared/data/real (skipped without them)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits


def run_night(rawdir: Path, tmp_path: Path) -> tuple[dict, Path]:
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "ccdflow", "night", str(rawdir), "--out", str(out),
                           "--caldb", str(tmp_path / "caldb.sqlite"), "--workers", "1", "--json"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads((out / "report.json").read_text()), out


def test_efosc_night_reduces_imaging_and_leaves_spectroscopy_alone(real_data, tmp_path):
    report, out = run_night(real_data / "efosc-ntt", tmp_path)
    types = report["counts"]["frame_types"]
    assert types["bias"] == 5 and types["flat"] == 3 and types["science"] == 6
    assert report["counts"]["masters"] == {"built": 2}  # no darks: efosc2.yaml says dark: none
    assert report["counts"]["science"] == {"reduced": 6}
    for frame in report["science"]:
        assert set(frame["calibrations"]) >= {"bias", "flat"}
        header = fits.getheader(frame["path"])
        assert header["CF_INST"] == "efosc2" and header["CF_OVERS"] == "DONE"
        # LN2-cooled: no dark looked for, and the product says so
        assert header["CF_DARK"] == "SKIPPED" and "{dark: none}" in header["CF_DARKN"]
        assert "dark" not in frame["calibrations"] and "not taken" in frame["calibrations_absent"]["dark"]
    left_alone = [f for f in report["frames"] if f["note"]]
    assert {f["type"] for f in left_alone} == {"spec_flat", "arc", "spectrum"}
    assert not report["unknown"]
    for frame in report["science"]:  # frame QA: good g-band frames (DIMM seeing 0.85-1.19")
        qa = frame["qa"]
        assert frame["qa_flags"] == [], frame["qa_flags"]
        assert 0.6 < qa["fwhm_arcsec"] < 1.3  # scale from the archive header's WCS
        assert qa["fwhm_arcsec"] == pytest.approx(qa["fwhm"] * 0.2408, rel=1e-3)
        assert qa["ellipticity"] < 0.15 and qa["n_stars"] > 100
        assert 0.97 < qa["noise_ratio"] < 1.1 and qa["cosmic_pixels"] > 100


def test_feder_night_matches_darks_by_exposure_and_flats_by_filter(real_data, tmp_path):
    report, out = run_night(real_data / "feder-apogee-mini", tmp_path)
    masters = {m["name"]: m for m in report["masters"]}
    # bias, darks at 5 exposure times, 4 flats, and a bad-pixel mask from the 120 s dark
    assert report["counts"]["masters"] == {"built": 11}
    (bpm,) = [m for m in report["masters"] if m["type"] == "bpm"]
    assert "_dark_120s_" in bpm["inputs"][0]
    assert sum("_dark_" in n for n in masters) == 5 and sum("_flat_" in n for n in masters) == 4
    assert report["counts"]["science"] == {"reduced": 40}
    for frame in report["science"]:
        cals = frame["calibrations"]
        assert f"_flat_{frame['filter']}_" in cals["flat"]["name"]
        # the closest exposure time is chosen: an exact match needs no scaling
        dark_exposure = float(cals["dark"]["name"].split("_dark_")[1].split("s_")[0])
        assert cals["dark"]["scaling"] is None or dark_exposure != frame["exposure_time"]
    # the B flats were taken while the cooler settled (-22.5..-18.4 C): one dark serves the set
    (b_flat,) = [m for n, m in masters.items() if "_flat_B_" in n]
    assert b_flat["status"] == "built" and b_flat["calibrations"]["dark"]["dtemp"] is not None

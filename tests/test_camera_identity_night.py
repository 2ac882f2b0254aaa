"""Two cameras, or two gain settings of one camera, in one raw folder and one caldb: `ccdflow
night` builds each its own masters and every science frame gets its own camera's (issue 13,
"Two cameras in one caldb with the generic map never get each other's masters")."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from ccdflow.caldb import CalDB
from ccdflow.simulator import SimulationSpec, simulate_night

#: One small night per camera: same shape, binning, exposures and filter, so only the camera
#: (or the gain setting) tells their frames apart. The bias levels differ, as they would.
BASE = dict(shape=(64, 64), overscan=8, n_bias=3, n_dark=3, dark_exptimes=(60.0,),
            dark_temperatures=(-20.0,), n_flat=3, filters=("V",), n_science=1, n_stars=5,
            n_saturated_stars=0)
TAGS = {"bias": "BIAS", "dark": "DARK", "flat": "FLAT"}
CMOS_YAML = """\
name: cmos-test
extends: generic
header:
  gain_setting: {keyword: [GAIN]}    # a CMOS camera's setting; EGAIN holds e-/ADU
  offset: {keyword: [OFFSET]}
"""


def ccdflow(*args: str, check: int | None = 0) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "ccdflow", *args], capture_output=True, text=True,
                          timeout=600)
    if check is not None:
        assert proc.returncode == check, proc.stdout + proc.stderr
    return proc


def one_folder(tmp: Path, setups: dict[str, tuple[int, float, dict]]) -> Path:
    """Each setup's night (seed, bias level, header cards to set) simulated apart, then its raw
    files copied into one folder as ``<setup>_<name>``."""
    raw = tmp / "raw"
    raw.mkdir()
    for name, (seed, bias, cards) in setups.items():
        sim = simulate_night(tmp / f"sim_{name}", SimulationSpec(seed=seed, bias_level=bias, **BASE))
        for path in sorted(sim.raw_dir.glob("*.fits")):
            with fits.open(path) as hdul:
                hdul[0].header.update(cards)
                hdul.writeto(raw / f"{name}_{path.name}")
    return raw


def run_night(tmp: Path, raw: Path, *options: str) -> tuple[dict, Path, Path]:
    out, caldb = tmp / "out", tmp / "caldb.sqlite"
    ccdflow("night", str(raw), "--out", str(out), "--caldb", str(caldb), "--workers", "1", *options)
    return json.loads((out / "report.json").read_text()), out, caldb


def calibrations_used(out: Path, caldb: Path) -> dict[str, dict[str, dict]]:
    """Raw file name -> calibration type -> the caldb record its product's provenance names,
    after checking the master file it names says the same camera and settings."""
    db = CalDB(f"sqlite:///{caldb}")
    used: dict[str, dict[str, dict]] = {}
    try:
        for product in sorted((out / "reduced").rglob("*.fits")):
            header = fits.getheader(product)
            used[header["CF_RAW"]] = {}
            for kind, tag in TAGS.items():
                record = db.get(header[f"CF_{tag}I"])
                master = fits.getheader(out / "masters" / header[f"CF_{tag}F"])
                assert Path(record["path"]).name == header[f"CF_{tag}F"]
                assert (master["CF_CAM"], master["CF_GSET"], master["CF_OFFS"]) == (
                    record["camera"] or "", record["gain_setting"] or "", record["offset"] or "")
                used[header["CF_RAW"]][kind] = record
    finally:
        db.close()
    return used


@pytest.fixture(scope="module")
def two_cameras(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("two_cameras")
    raw = one_folder(tmp, {"a": (1, 1000.0, {"INSTRUME": "CamA"}),
                           "b": (2, 1400.0, {"INSTRUME": "CamB"})})
    return (raw, *run_night(tmp, raw))


def test_two_cameras_on_the_generic_map_get_their_own_masters(two_cameras):
    raw, report, out, caldb = two_cameras
    assert report["counts"]["science"] == {"reduced": 2}
    built = [m for m in report["masters"] if m["status"] == "built"]
    for kind in ("bias", "dark", "flat"):
        names = sorted(m["name"] for m in built if m["type"] == kind)
        assert len(names) == 2 and "_CamA_" in names[0] and "_CamB_" in names[1], names
    used = calibrations_used(out, caldb)
    assert sorted(used) == ["a_n1_sci_V_001.fits", "b_n1_sci_V_001.fits"]
    for raw_name, records in used.items():
        camera = fits.getheader(raw / raw_name)["INSTRUME"]
        assert {kind: r["camera"] for kind, r in records.items()} == dict.fromkeys(TAGS, camera)
        for record in records.values():  # and each master was made of that camera's frames only
            inputs = [i["name"] for i in CalDB(f"sqlite:///{caldb}").get(record["id"])["inputs"]]
            assert inputs and all(name.startswith(raw_name[0] + "_") for name in inputs), inputs


def test_caldb_best_refuses_another_cameras_master_with_the_reason(two_cameras, tmp_path):
    raw, _report, out, caldb = two_cameras
    frame = str(raw / "b_n1_sci_V_001.fits")
    best = json.loads(ccdflow("caldb", "best", "--type", "bias", frame, "--caldb", str(caldb),
                              "--json").stdout)
    assert best["selected"]["camera"] == "CamB" and best["frame"]["camera"] == "CamB"
    assert "camera" in best["policy"]["must_match"]
    # Pinned, even with a waiver, the other camera's master is refused.
    other = next(r["id"] for r in json.loads(ccdflow("caldb", "list", "--type", "bias", "--caldb",
                                                     str(caldb), "--json").stdout)
                 if r["camera"] == "CamA")
    pinned = ccdflow("caldb", "best", "--type", "bias", frame, "--caldb", str(caldb), "--pin",
                     str(other), "--waive", check=1)
    assert ("cannot be used for this frame, even with a waiver: camera: need CamB, is CamA"
            in " ".join(pinned.stdout.split()))
    # A caldb holding only camera A's master bias has nothing for camera B, and says why.
    only_a = tmp_path / "only_a.sqlite"
    ccdflow("caldb", "init", "--caldb", str(only_a))
    ccdflow("caldb", "add", *map(str, (out / "masters").glob("*_bias_*CamA_*.fits")), "--caldb",
            str(only_a))
    refused = ccdflow("caldb", "best", "--type", "bias", frame, "--caldb", str(only_a), check=1)
    text = " ".join(refused.stdout.split())
    assert "bias for generic camera 'CamB'" in text and "same instrument, camera," in text
    assert "1 candidates, all rejected: 1 camera (need CamB, is CamA)" in text, text


def test_two_gain_settings_of_one_camera_get_their_own_masters(tmp_path):
    cards = {"INSTRUME": "CamC", "EGAIN": 1.5, "OFFSET": 9}
    raw = one_folder(tmp_path, {"g0": (3, 1000.0, {**cards, "GAIN": 0}),
                                "g120": (4, 1400.0, {**cards, "GAIN": 120})})
    config = tmp_path / "cmos-test.yaml"
    config.write_text(CMOS_YAML)
    report, out, caldb = run_night(tmp_path, raw, "--instrument-config", str(config))
    assert report["counts"]["science"] == {"reduced": 2}
    bias_names = sorted(m["name"] for m in report["masters"] if m["type"] == "bias")
    assert [n.split("_")[4:7] for n in bias_names] == [["CamC", "gain0", "offset9"],
                                                       ["CamC", "gain120", "offset9"]]
    for raw_name, records in calibrations_used(out, caldb).items():
        setting = str(fits.getheader(raw / raw_name)["GAIN"])
        assert {(r["camera"], r["gain_setting"], r["offset"]) for r in records.values()} == {
            ("CamC", setting, "9")}, raw_name


def test_an_uncooled_camera_whose_yaml_widens_the_tolerance_gets_one_dark_master(tmp_path):
    """Darks at 24.5-26.0 C: a YAML with ``temperature_tolerance: 5`` makes one master, of all six
    frames, and the science frame uses it."""
    spec = SimulationSpec(**{**BASE, "n_dark": 2, "dark_temperatures": (24.5, 25.2, 26.0)})
    raw = simulate_night(tmp_path / "sim", spec).raw_dir
    config = tmp_path / "uncooled.yaml"
    config.write_text("name: uncooled\nextends: generic\ncaldb:\n  dark: {temperature_tolerance: 5}\n")
    report, out, caldb = run_night(tmp_path, raw, "--instrument-config", str(config))
    darks = [m for m in report["masters"] if m["type"] == "dark"]
    assert [(m["status"], m["n"]) for m in darks] == [("built", 6)]
    assert report["counts"]["science"] == {"reduced": 1}
    (record,) = [r for r in calibrations_used(out, caldb).values()]
    assert Path(record["dark"]["path"]).name == darks[0]["name"]

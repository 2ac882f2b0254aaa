"""A camera that takes no darks (issue 13 item 3): an instrument's ``calibrations:`` policy.

Simulated nights without dark frames, reduced with an instrument file that says the darks are
not taken (``dark: none``), optional (``dark: optional``), or says nothing (required): what runs,
what the products and the report say, and the error that names the YAML line to add.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from astropy.io import fits

from ccdflow.caldb import CalDB
from ccdflow.framework.engine.calibration_policy import check_policy, needs_of, required_hint
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import ConfigError, MissingCalibrationError
from ccdflow.framework.engine.instrument_files import manager_with_files
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.pipeline.executor import SerialExecutor
from ccdflow.pipeline.night import run_night
from ccdflow.pipeline.report import write_report
from ccdflow.pipeline.spec import RunSpec, forget_environments
from ccdflow.pipeline.watch import Watcher
from ccdflow.simulator import SimulationSpec, simulate_night

SMALL = dict(shape=(64, 64), overscan=8, n_bias=3, n_flat=3, filters=("V",), n_science=2,
             n_stars=5, n_saturated_stars=0, dark_temperatures=(-20.0,))


@pytest.fixture(scope="module")
def no_darks(tmp_path_factory) -> Path:
    """Bias, V flats and two V science frames of a cryogenic camera: not one dark."""
    return simulate_night(tmp_path_factory.mktemp("nodark"), SimulationSpec(n_dark=0, **SMALL)).raw_dir


@pytest.fixture(scope="module")
def with_darks(tmp_path_factory) -> Path:
    """The same night with 60 s darks (the science exposure) at the science temperature."""
    spec = SimulationSpec(n_dark=3, dark_exptimes=(60.0,), **SMALL)
    return simulate_night(tmp_path_factory.mktemp("dark"), spec).raw_dir


def camera_file(folder: Path, policy: str | None) -> Path:
    """An instrument file for the simulated camera, with the given dark policy (None: no key)."""
    path = folder / "cryocam.yaml"
    line = "" if policy is None else f"calibrations: {{dark: {policy}}}\n"
    path.write_text(f"name: cryocam\nextends: generic\n{line}")
    return path


def night(raw: Path, out: Path, instrument_file: Path) -> dict:
    """`ccdflow night` in this process, as the command runs it; the report it writes."""
    spec = RunSpec(outdir=str(out / "out"), caldb_url=f"sqlite:///{out / 'caldb.sqlite'}",
                   instrument_files=(str(instrument_file),))
    CalDB.create(spec.caldb_url).close()
    try:
        result = run_night(raw, spec, SerialExecutor())
        write_report(result)
    finally:
        forget_environments()
    return json.loads((out / "out" / "report.json").read_text())


def history(path: str) -> str:
    return "\n".join(str(h) for h in fits.getheader(path).get("HISTORY", []))


def flat_master(report: dict) -> dict:
    (flat,) = [m for m in report["masters"] if m["type"] == "flat"]
    return flat


def test_dark_none_reduces_everything_without_looking_for_a_dark(no_darks, tmp_path):
    report = night(no_darks, tmp_path, camera_file(tmp_path, "none"))
    assert report["counts"]["science"] == {"reduced": 2}
    flat = flat_master(report)
    assert flat["status"] == "built" and "dark" not in flat["calibrations"]
    reason = "not taken (instrument cryocam: calibrations: {dark: none})"
    assert flat["calibrations_absent"] == {"dark": reason}
    for path in [flat["path"], *(s["path"] for s in report["science"])]:
        header = fits.getheader(path)
        assert header["CF_DARK"] == "SKIPPED" and header["CF_DARKN"] == reason
        assert "CF_DARKF" not in header and "CF_DARKS" not in header
        assert f"ccdflow dark: skipped (no dark: {reason})" in history(path).replace("\n", "")
    for entry in report["science"]:
        assert entry["steps"]["DARK"] == "SKIPPED" and entry["steps"]["FLAT"] == "DONE"
        assert entry["calibrations_absent"]["dark"] == reason
    (grouped,) = [a for a in report["calibrations_absent"] if a["type"] == "dark"]
    assert grouped["reason"] == reason and grouped["n"] == 3  # the flat master and two frames
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Calibrations not applied" in html and "{dark: none}" in html


def test_dark_optional_without_a_dark_skips_with_the_caldb_reason(no_darks, tmp_path):
    report = night(no_darks, tmp_path, camera_file(tmp_path, "optional"))
    assert report["counts"]["science"] == {"reduced": 2}
    assert flat_master(report)["status"] == "built"
    for entry in report["science"]:
        why = entry["calibrations_absent"]["dark"]
        assert why.startswith("optional (instrument cryocam: calibrations: {dark: optional}), none used:")
        assert "no dark calibrations recorded for instrument cryocam" in why
        header = fits.getheader(entry["path"])
        assert header["CF_DARK"] == "SKIPPED" and header["CF_DARKN"] == why
        assert header["CF_FLAT"] == "DONE" and "CF_FLATF" in header
    # grouped by reason: the flat master's (5 s) and the frames' (60 s) differ in the dark asked for
    assert sum(a["n"] for a in report["calibrations_absent"] if a["type"] == "dark") == 3


def test_dark_optional_uses_a_dark_that_matches(with_darks, tmp_path):
    report = night(with_darks, tmp_path, camera_file(tmp_path, "optional"))
    assert report["counts"]["science"] == {"reduced": 2}
    assert "dark" in flat_master(report)["calibrations"]
    for entry in report["science"]:
        assert "dark" in entry["calibrations"] and "dark" not in entry["calibrations_absent"]
        header = fits.getheader(entry["path"])
        assert header["CF_DARK"] == "DONE" and "CF_DARKF" in header and "CF_DARKN" not in header
    assert not any(a["type"] == "dark" for a in report["calibrations_absent"])


def test_required_dark_missing_fails_each_frame_naming_the_yaml_line(no_darks, tmp_path):
    cam = camera_file(tmp_path, None)
    report = night(no_darks, tmp_path, cam)
    # the night goes on: the bias master is built, every failure is reported with its reason
    assert [m["status"] for m in report["masters"] if m["type"] == "bias"] == ["built"]
    flat = flat_master(report)
    failures = [flat, *report["science"]]
    assert len(failures) == 3 and {f["status"] for f in failures} == {"failed"}
    for entry in failures:
        assert entry["error"] == "NoCalibrationError"
        assert "no dark calibrations recorded for instrument cryocam" in entry["reason"]
        assert f"add `calibrations: {{dark: none}}` to its instrument file {cam}" in entry["reason"]


def test_the_master_command_follows_the_same_policy(no_darks, tmp_path):
    flats = sorted(str(p) for p in no_darks.glob("*flat*"))
    bias = tmp_path / "bias.fits"
    ccdflow = [sys.executable, "-m", "ccdflow", "master"]
    subprocess.run([*ccdflow, "bias", *sorted(str(p) for p in no_darks.glob("*bias*")), "--out",
                    str(bias)], check=True, capture_output=True)
    refused = subprocess.run([*ccdflow, "flat", *flats, "--bias", str(bias), "--out",
                              str(tmp_path / "flat.fits")], capture_output=True, text=True)
    assert refused.returncode != 0 and "the recipe needs a master dark" in refused.stderr
    assert "calibrations: {dark: none}" in refused.stderr and "extends: generic" in refused.stderr
    cam = camera_file(tmp_path, "none")
    done = subprocess.run([*ccdflow, "flat", *flats, "--bias", str(bias), "--instrument-config", str(cam),
                           "--out", str(tmp_path / "flat.fits"), "--json"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert set(summary["calibrations"]) == {"bias"} and "not taken" in summary["calibrations_absent"]["dark"]
    assert fits.getheader(tmp_path / "flat.fits")["CF_DARK"] == "SKIPPED"


def test_policy_needs_and_refusals(tmp_path):
    manager = get_plugin_manager()
    generic = build(manager, instrument="generic")
    steps = [manager.step(s) for s in ("bias", "dark", "flat", "bpm")]
    assert needs_of(steps, generic.instrument).required == ("bias", "dark", "flat")
    assert needs_of(steps, generic.instrument).optional == ("bpm",)
    config = build(manager_with_files([camera_file(tmp_path, "optional")]), instrument="cryocam")
    needs = needs_of(steps, config.instrument)
    assert needs.required == ("bias", "flat") and needs.optional == ("dark", "bpm")
    # a plugin's instrument: the hint says where the line goes (its YAML, or a file extending it)
    hint = required_hint("dark", generic)
    assert "`calibrations: {dark: none}`" in hint and "`extends: generic`" in hint
    error = MissingCalibrationError("no dark", path="x.fits")
    error.hint = hint
    assert str(error) == f"x.fits: no dark; {hint}"
    # a misspelt type would leave the dark required without a word: refused by name
    typo = tmp_path / "typo.yaml"
    typo.write_text("name: typocam\nextends: generic\ncalibrations: {drak: none}\n")
    with pytest.raises(ConfigError, match=r"unknown calibration type 'drak'; registered: bias, bpm, dark"):
        build(manager_with_files([typo]), instrument="typocam")
    check_policy(config.instrument, ["dark"], "x")
    bad = tmp_path / "bad.yaml"
    bad.write_text("name: badcam\nextends: generic\ncalibrations: {dark: never}\n")
    with pytest.raises(ConfigError, match="calibrations.dark"):
        manager_with_files([bad], strict=True)


def test_watch_follows_the_same_policy(no_darks, tmp_path):
    spec = RunSpec(outdir=str(tmp_path / "out"), caldb_url=f"sqlite:///{tmp_path / 'caldb.sqlite'}",
                   instrument_files=(str(camera_file(tmp_path, "none")),))
    CalDB.create(spec.caldb_url).close()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for path in no_darks.iterdir():
        shutil.copy(path, incoming)
    watcher = Watcher(incoming, spec, SerialExecutor(), settle=2.0, calibration_quiet=30.0)
    try:
        watcher.poll(now=0.0)
        watcher.poll(now=3.0)  # settled: masters first, then the science frames
    finally:
        forget_environments()
    assert [m["status"] for m in watcher.result.masters] == ["built", "built"]
    assert [s["status"] for s in watcher.result.science] == ["reduced", "reduced"]
    for entry in watcher.result.science:
        assert "not taken" in entry["calibrations_absent"]["dark"]
        assert fits.getheader(entry["path"])["CF_DARK"] == "SKIPPED"

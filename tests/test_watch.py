"""`ccdflow watch`: files taken once complete, masters built when a set is done, clean stop."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from ccdflow.caldb import CalDB
from ccdflow.pipeline.executor import SerialExecutor
from ccdflow.pipeline.spec import RunSpec, forget_environments
from ccdflow.pipeline.watch import Watcher
from ccdflow.simulator import SimulationSpec, simulate_night


@pytest.fixture(scope="module")
def raw(tmp_path_factory) -> Path:
    spec = SimulationSpec(n_science=1, filters=("V",), dark_temperatures=(-20.0,))
    return simulate_night(tmp_path_factory.mktemp("watch"), spec).raw_dir


@pytest.fixture
def watcher(tmp_path):
    caldb = f"sqlite:///{tmp_path / 'caldb.sqlite'}"
    CalDB.create(caldb).close()
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    spec = RunSpec(outdir=str(tmp_path / "out"), caldb_url=caldb)
    yield Watcher(incoming, spec, SerialExecutor(), settle=2.0, calibration_quiet=30.0)
    forget_environments()


def test_files_are_taken_only_once_stable_and_masters_wait_for_the_set(raw, watcher):
    calibrations = sorted(p for p in raw.iterdir() if "sci" not in p.name)
    (science,) = sorted(p for p in raw.iterdir() if "sci" in p.name)
    half = calibrations[0].read_bytes()
    target = watcher.rawdir / calibrations[0].name
    target.write_bytes(half[: len(half) // 2])  # the camera is still writing
    assert watcher.poll(now=0.0) == 0 and not watcher.taken
    target.write_bytes(half)
    for path in calibrations[1:]:
        shutil.copy(path, watcher.rawdir)
    watcher.poll(now=1.0)
    assert not watcher.taken  # sizes just changed: not settled yet
    watcher.poll(now=3.5)
    assert len(watcher.taken) == len(calibrations) and not watcher.result.unknown
    assert not watcher.result.masters  # the set may still grow
    shutil.copy(science, watcher.rawdir)
    watcher.poll(now=4.0)
    watcher.poll(now=6.5)  # science settled: masters first, then the frame
    assert {m["status"] for m in watcher.result.masters} == {"built"}
    # the bad-pixel mask is made as in `night`, from the dark and the flat
    assert [m["type"] for m in watcher.result.masters] == ["bias", "dark", "dark", "flat", "bpm"]
    (entry,) = watcher.result.science
    assert entry["status"] == "reduced", entry.get("reason")
    assert Path(entry["path"]).is_file()


def test_a_stalled_copy_is_taken_once_complete_and_a_grown_set_adds_a_master(raw, watcher):
    """A copy that stalls longer than ``settle`` is reported, then taken when it completes; a
    calibration set that grows gets a new master beside the old one, whose bytes never change."""
    biases = sorted(p for p in raw.iterdir() if "bias" in p.name)
    for path in biases[:3]:
        shutil.copy(path, watcher.rawdir)
    stalled = watcher.rawdir / biases[3].name
    stalled.write_bytes(biases[3].read_bytes()[:5000])  # the copy stops for a while
    watcher.poll(now=0.0)
    watcher.poll(now=2.5)
    assert [Path(u["path"]).name for u in watcher.result.unknown] == [stalled.name]
    assert "truncated" in watcher.result.unknown[0]["reason"]
    watcher.poll(now=40.0)  # quiet: the 3 complete biases make a master
    (first,) = watcher.result.masters
    assert first["status"] == "built" and first["n"] == 3
    first_bytes = Path(first["path"]).read_bytes()
    stalled.write_bytes(biases[3].read_bytes())  # the copy completes
    watcher.poll(now=41.0)
    watcher.poll(now=43.5)
    assert not watcher.result.unknown and str(stalled) in watcher.taken
    watcher.poll(now=80.0)
    assert [(m["type"], m["status"], m["n"]) for m in watcher.result.masters] == [
        ("bias", "built", 3), ("bias", "built", 4)]
    assert watcher.result.masters[1]["path"] != first["path"]
    assert Path(first["path"]).read_bytes() == first_bytes


def test_a_quiet_calibration_set_is_built_without_science(raw, watcher):
    for path in sorted(p for p in raw.iterdir() if "bias" in p.name):
        shutil.copy(path, watcher.rawdir)
    watcher.poll(now=0.0)
    watcher.poll(now=2.5)
    assert not watcher.result.masters
    watcher.poll(now=40.0)
    assert [m["type"] for m in watcher.result.masters] == ["bias"]
    watcher.poll(now=80.0)
    assert len(watcher.result.masters) == 1  # nothing new: not rebuilt


def test_watch_command_reduces_arrivals_and_stops_cleanly_on_sigterm(raw, tmp_path):
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for path in raw.iterdir():
        shutil.copy(path, incoming)
    out = tmp_path / "out"
    proc = subprocess.Popen([sys.executable, "-m", "ccdflow", "watch", str(incoming), "--out", str(out),
                             "--caldb", str(tmp_path / "caldb.sqlite"), "--interval", "0.2", "--settle",
                             "0.3", "--workers", "1", "--json"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not list((out / "reduced").glob("*.fits")):
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, stderr
    result = json.loads(stdout)
    assert result["counts"]["science"] == {"reduced": 1}
    assert (out / "report.html").is_file()
    masters = json.loads((out / "report.json").read_text())["masters"]
    assert {m["type"] for m in masters} == {"bias", "dark", "flat", "bpm"}

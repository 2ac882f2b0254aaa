"""The example third-party plugin: installed for real and found by `ccdflow plugins`.

The session fixture pip-installs ``examples/ccdflow-example-plugin`` (editable) into the
running interpreter unless this checkout's copy is already installed, then a fresh
``python -m ccdflow`` process has to discover it through its entry point, exactly as an
observatory's plugin would be found.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

import ccdflow.plugins.instruments as builtin_instruments
from ccdflow.framework.frame import FrameMeta
from ccdflow.framework.header_map import normalise
from ccdflow.framework.plugins import PluginManager
from ccdflow.framework.step import StepContext

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ccdflow-example-plugin"
DIST = "ccdflow-example-plugin"
PACKAGE = "ccdflow_example_plugin"

_WHERE = (
    "import importlib.metadata as md, ccdflow_example_plugin as p; "
    f"print(md.version({DIST!r})); print(p.__file__)"
)


def _installed_from_here(env: dict[str, str]) -> bool:
    """True when a fresh interpreter imports the package from this checkout's example."""
    done = subprocess.run([sys.executable, "-c", _WHERE], capture_output=True, text=True,
                          env=env, timeout=120)
    if done.returncode != 0:
        return False
    where = Path(done.stdout.splitlines()[-1]).resolve()
    return where.is_relative_to(EXAMPLE.resolve())


def _pip_install(*options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", *options, "-e", str(EXAMPLE)],
        capture_output=True, text=True, timeout=600,
    )


def _dist_info_fallback(folder: Path) -> None:
    """Expose the example through a hand-made dist-info, as if pip had installed it."""
    info = folder / f"{PACKAGE}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[ccdflow.plugins]\nexample = {PACKAGE}\n")


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses in which the example plugin is installed."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("CCDFLOW_DISABLE_PLUGINS", "CCDFLOW_STRICT_PLUGINS")}
    how = "already installed"
    if not _installed_from_here(env):
        # Prefer the build tools already here; an isolated build fetches setuptools.
        attempts = [_pip_install("--no-build-isolation"), None]
        if attempts[0].returncode != 0 or not _installed_from_here(env):
            attempts[1] = _pip_install()
        if _installed_from_here(env):
            how = "pip install -e"
        else:
            errors = "\n".join(a.stderr[-800:] for a in attempts if a is not None)
            folder = tmp_path_factory.mktemp("fallback-site")
            _dist_info_fallback(folder)
            extra = os.pathsep.join([str(folder), str(EXAMPLE)])
            env["PYTHONPATH"] = os.pathsep.join(filter(None, [extra, env.get("PYTHONPATH")]))
            how = "dist-info fallback (pip could not install):\n" + errors
            assert _installed_from_here(env), how
    # This process started before the install, so its .pth file was not read: make the
    # package importable here too, or in-process plugin loading would report it broken.
    if str(EXAMPLE) not in sys.path:
        sys.path.append(str(EXAMPLE))
    importlib.invalidate_caches()
    print(f"example plugin: {how}")
    return env


def _ccdflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccdflow", *args], capture_output=True,
                          text=True, env=env, timeout=300, cwd=ROOT)


def test_ccdflow_plugins_discovers_example_plugin(plugin_env):
    done = _ccdflow(plugin_env, "plugins", "--json")
    assert done.returncode == 0, done.stderr
    data = json.loads(done.stdout)
    by_name = {p["name"]: p for p in data["plugins"]}
    assert "example" in by_name, f"example plugin not listed; failed: {data['failed']}"
    example = by_name["example"]
    assert example["distribution"] == DIST
    assert example["version"] == "0.1.0"
    assert example["steps"] == ["pedestal"]
    assert example["instruments"] == ["example-cam"]
    assert "example" not in [f["name"] for f in data["failed"]]


def test_example_plugin_loads_in_strict_mode_and_can_be_blocked(plugin_env):
    done = _ccdflow(plugin_env, "--strict-plugins", "plugins", "--json")
    assert done.returncode == 0, done.stderr
    blocked = _ccdflow({**plugin_env, "CCDFLOW_DISABLE_PLUGINS": "example"}, "plugins", "--json")
    data = json.loads(blocked.stdout)
    assert data["blocked"] == ["example"]
    assert "example" not in {p["name"] for p in data["plugins"]}


# -- the plugin's content, in this process ------------------------------------------------


@pytest.fixture
def example(plugin_env):
    return importlib.import_module(PACKAGE)


@pytest.fixture
def example_manager(example) -> PluginManager:
    """Built-in instruments plus the example, registered directly (no entry points)."""
    manager = PluginManager(strict=True)
    manager.register(builtin_instruments, "builtin_instruments", "ccdflow")
    manager.register(example, "example", DIST, "0.1.0")
    return manager


def test_apply_pedestal_adds_and_subtracts(example):
    data = np.array([[0, 1], [2, -3]], dtype=np.int16)
    added = example.apply_pedestal(data, 100.0)
    assert added.dtype == np.float32
    np.testing.assert_array_equal(added, [[100, 101], [102, 97]])
    np.testing.assert_array_equal(example.apply_pedestal(added, 100.0, "subtract"), data)
    np.testing.assert_array_equal(data, [[0, 1], [2, -3]])  # input untouched


def test_pedestal_step_through_run_step(example, example_manager):
    instrument = example_manager.instrument("example-cam")
    meta = FrameMeta(path="x.fits", frame_type="science", instrument="example-cam",
                     exposure_time=30.0, date_obs=datetime(2026, 3, 1, tzinfo=UTC), shape=(3, 4))
    context = StepContext(meta=meta, instrument=instrument)
    ccd = CCDData(np.full((3, 4), 7.0, np.float32), unit="adu", header=fits.Header(),
                  uncertainty=StdDevUncertainty(np.full((3, 4), 2.0, np.float32)))
    step = example_manager.step("pedestal")
    result = example_manager.hook.run_step(step=step(), ccd=ccd, params=step.Params(level=50.0),
                                   calibrations={}, context=context)
    np.testing.assert_allclose(result.data, 57.0)
    np.testing.assert_allclose(result.uncertainty.array, 2.0)  # a constant adds no noise
    np.testing.assert_allclose(ccd.data, 7.0)
    assert result.header["CF_PEDES"] == "DONE"


def test_pedestal_params_are_documented_and_strict(example):
    assert all(f.description for f in example.PedestalParams.model_fields.values())
    with pytest.raises(ValueError, match="levle"):
        example.PedestalParams(levle=3)


def _raw_header(**cards) -> fits.Header:
    base = {"NAXIS": 2, "NAXIS1": 1056, "NAXIS2": 1024, "IMAGETYP": "Light Frame",
            "EXPTIME": 30.0, "DATE-OBS": "2026-03-01T22:10:00", "FILTER": "V"}
    return fits.Header({**base, **cards})


def test_example_cam_identifies_its_headers_over_generic(example_manager):
    assert example_manager.identify({0: _raw_header(INSTRUME="EXAMPLECAM-2")}) == "example-cam"
    assert example_manager.identify({0: _raw_header(INSTRUME="examplecam")}) == "example-cam"
    assert example_manager.identify({0: _raw_header(INSTRUME="OTHERCAM")}) == "generic"
    # Old firmware: no INSTRUME card, recognised by the code-based identifier.
    assert example_manager.identify({0: _raw_header(ORIGIN="ExampleSoft 1.4")}) == "example-cam"


def test_example_cam_header_map(example_manager):
    instrument = example_manager.instrument("example-cam")
    meta = normalise(instrument, {0: _raw_header(INSTRUME="EXAMPLECAM-2", **{"CCD-TEMP": -25})})
    assert (meta.instrument, meta.frame_type, meta.exposure_time) == ("example-cam", "science", 30)
    assert (meta.filter, meta.temperature, meta.readout_mode) == ("V", -25.0, "slow")
    assert meta.detector == "EXC-1" and meta.shape == (1024, 1056)
    assert instrument.steps["pedestal"] == {"level": 50.0}
    assert [e.step for e in instrument.recipes["science"]][-1] == "pedestal"

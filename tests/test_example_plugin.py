"""The example third-party plugin: found by `ccdflow plugins` as if installed, and tested with
ccdflow.testing's fixtures, the way an observatory would test its own plugin.

Nothing is installed into the environment: a session fixture writes the dist-info that pip
would write (METADATA and the ``ccdflow.plugins`` entry point) into a temporary folder, and a
fresh ``python -m ccdflow`` process, with that folder and the example's source on PYTHONPATH,
has to discover the plugin through its entry point exactly as an installed one is found.
"""

from __future__ import annotations

import importlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.headers.header_map import normalise

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ccdflow-example-plugin"
DIST = "ccdflow-example-plugin"
PACKAGE = "ccdflow_example_plugin"

_WHERE = (
    "import importlib.metadata as md, ccdflow_example_plugin as p; "
    f"print(md.version({DIST!r})); print(p.__file__)"
)


def _found_here(env: dict[str, str]) -> bool:
    """True when a fresh interpreter imports the package from this checkout's example."""
    done = subprocess.run([sys.executable, "-c", _WHERE], capture_output=True, text=True,
                          env=env, timeout=120)
    if done.returncode != 0:
        return False
    where = Path(done.stdout.splitlines()[-1]).resolve()
    return where.is_relative_to(EXAMPLE.resolve())


def _write_dist_info(folder: Path) -> None:
    """What ``pip install`` leaves for importlib.metadata: the name, version and entry point."""
    info = folder / f"{PACKAGE}-0.1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {DIST}\nVersion: 0.1.0\n")
    (info / "entry_points.txt").write_text(f"[ccdflow.plugins]\nexample = {PACKAGE}\n")


@pytest.fixture(scope="session")
def plugin_env(tmp_path_factory) -> dict[str, str]:
    """Environment for subprocesses in which the example plugin looks installed.

    PYTHONPATH comes before site-packages, so this checkout's example wins over any copy a
    user installed (importlib.metadata keeps the first distribution of a name it finds).
    """
    env = {k: v for k, v in os.environ.items()
           if k not in ("CCDFLOW_DISABLE_PLUGINS", "CCDFLOW_STRICT_PLUGINS")}
    site = tmp_path_factory.mktemp("example-site")
    _write_dist_info(site)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(site), str(EXAMPLE), env.get("PYTHONPATH")]))
    assert _found_here(env), f"the example is not importable from {EXAMPLE} with PYTHONPATH={site}"
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
    assert example["steps"] == ["pedestal", "fringe"]
    assert example["instruments"] == ["example-cam"]
    assert example["calibration_types"] == ["fringe"]
    assert "example" not in [f["name"] for f in data["failed"]]


def test_example_plugin_loads_in_strict_mode_and_can_be_blocked(plugin_env):
    done = _ccdflow(plugin_env, "--strict-plugins", "plugins", "--json")
    assert done.returncode == 0, done.stderr
    blocked = _ccdflow({**plugin_env, "CCDFLOW_DISABLE_PLUGINS": "example"}, "plugins", "--json")
    data = json.loads(blocked.stdout)
    assert data["blocked"] == ["example"]
    assert "example" not in {p["name"] for p in data["plugins"]}


# -- the plugin's content, in this process, with ccdflow.testing's fixtures ----------------------


@pytest.fixture
def example():
    """The example package from this checkout, whatever copy of it may be installed."""
    module = sys.modules.get(PACKAGE)
    if module is None or not Path(module.__file__).resolve().is_relative_to(EXAMPLE.resolve()):
        for name in [m for m in sys.modules if m == PACKAGE or m.startswith(PACKAGE + ".")]:
            del sys.modules[name]
        sys.path.insert(0, str(EXAMPLE))
        try:
            module = importlib.import_module(PACKAGE)
        finally:
            sys.path.remove(str(EXAMPLE))
    return module


@pytest.fixture
def example_manager(example, ccdflow_plugin_manager):
    """ccdflow's built-ins plus the example, and no other installed plugin (strict)."""
    return ccdflow_plugin_manager(example)


def test_apply_pedestal_adds_and_subtracts(example):
    data = np.array([[0, 1], [2, -3]], dtype=np.int16)
    added = example.apply_pedestal(data, 100.0)
    assert added.dtype == np.float32
    np.testing.assert_array_equal(added, [[100, 101], [102, 97]])
    np.testing.assert_array_equal(example.apply_pedestal(added, 100.0, "subtract"), data)
    np.testing.assert_array_equal(data, [[0, 1], [2, -3]])  # input untouched


def test_pedestal_step_through_run_step(example_manager, ccdflow_run_step, ccdflow_make_ccd):
    ccd = ccdflow_make_ccd(np.full((3, 4), 7.0), uncertainty=2.0)
    # example-cam configures the pedestal (steps: pedestal: {level: 50.0}); params go over it
    result = ccdflow_run_step("pedestal", ccd, instrument="example-cam", manager=example_manager)
    np.testing.assert_allclose(result.data, 57.0)
    np.testing.assert_allclose(result.uncertainty.array, 2.0)  # a constant adds no noise
    np.testing.assert_allclose(ccd.data, 7.0)
    assert result.header["CF_PEDES"] == "DONE"
    lowered = ccdflow_run_step("pedestal", ccd, params={"level": 5.0, "operation": "subtract"},
                               instrument="example-cam", manager=example_manager)
    np.testing.assert_allclose(lowered.data, 2.0)


def test_pedestal_on_a_product_of_the_simulated_night(example_manager, ccdflow_night, ccdflow_run_step):
    from ccdflow.framework.io.fitsio import read_product

    reduced = read_product(ccdflow_night().products[0])
    out = ccdflow_run_step("pedestal", reduced, params={"level": 25.0}, instrument="example-cam",
                           manager=example_manager)
    np.testing.assert_allclose(out.data, reduced.data + np.float32(25.0))
    np.testing.assert_array_equal(out.mask, reduced.mask)
    np.testing.assert_array_equal(out.uncertainty.array, reduced.uncertainty.array)
    assert out.unit == reduced.unit and out.header["CF_FLAT"] == "DONE"  # the night's cards kept
    assert out.header["CF_PEDES"] == "DONE"


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

"""ccdflow.testing, the pytest plugin for plugin authors: found through its entry point by a test
suite that has no conftest, light to import, and its helpers behave as documented."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from importlib.metadata import entry_points
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from pydantic import Field

from ccdflow.framework.engine.errors import ConfigError, NoWorkError, PluginError, UnprocessableInputError
from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.step import Step, StepContext, StepParams
from ccdflow.testing import make_ccd, make_meta, plugin_manager, run_step
from ccdflow.testing.manager import builtin_entry_points

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "ccdflow-example-plugin"
DOC = ROOT / "docs" / "testing-plugins.md"


class ScaleParams(StepParams):
    factor: float = Field(2.0, description="Multiply the frame by this.")


class Scaler(Step):
    """A step no installed plugin has: run_step must register it on the fly."""

    name = "scaler"
    Params = ScaleParams

    def run(self, ccd, params, calibrations, context):
        out = ccd.copy()
        out.data = ccd.data * np.float32(params.factor)
        return out


class Idle(Step):
    name = "idle"

    def run(self, ccd, params, calibrations, context):
        raise NoWorkError("nothing to do on this frame")


class NeedsBias(Scaler):
    name = "needsbias"
    calibrations = ("bias",)


# -- the pytest plugin itself ------------------------------------------------------------------


def test_registered_as_a_pytest11_entry_point():
    found = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert found.get("ccdflow") == "ccdflow.testing", "reinstall ccdflow: pip install -e ."


def test_importing_the_plugin_imports_nothing_heavy():
    code = ("import sys, ccdflow.testing; "
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'astropy', 'numpy', 'pydantic'}), "
            "'ccdflow.framework' in sys.modules)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["[]", "False"]


EXTERNAL_TEST = '''
def test_only_fixtures(ccdflow_run_step, ccdflow_make_ccd, ccdflow_make_meta, ccdflow_instrument,
                       ccdflow_plugin_manager):
    camera = ccdflow_instrument(name="ext-cam", gain=2.0)
    raw = ccdflow_make_ccd(level=1200.0, noise=3.0)
    out = ccdflow_run_step("overscan", raw, instrument=camera)
    out = ccdflow_run_step("trim", out, instrument=camera,
                           meta=ccdflow_make_meta(instrument="ext-cam", shape=raw.shape))
    assert out.shape == (40, 60) and abs(float(out.data.mean())) < 3.0
    assert out.header["CF_OVERS"] == "DONE" and out.header["CF_TRIM"] == "DONE"
    assert "ext-cam" in ccdflow_plugin_manager(camera).instruments
'''


def test_an_external_suite_and_the_docs_examples_get_the_fixtures_without_a_conftest(
        pytester, monkeypatch):
    """A fresh pytest, in a folder with no conftest, finds the fixtures through the entry point;
    the docs' examples (one test module, on the example plugin) pass there too."""
    examples = "\n\n".join(re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S))
    pytester.makepyfile(test_external=EXTERNAL_TEST, test_doc_examples=examples)
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join(filter(None, [str(EXAMPLE),
                                                                   os.environ.get("PYTHONPATH")])))
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=1 + examples.count("\ndef test_"))


# -- run_step ------------------------------------------------------------------------------------


def test_run_step_does_the_frameworks_bookkeeping():
    ccd = make_ccd(level=3.0)
    header = ccd.header
    context = StepContext(make_meta(shape=ccd.shape), plugin_manager(Scaler).instrument("generic"))
    out = run_step(Scaler, ccd, context=context)
    np.testing.assert_allclose(out.data, 6.0)
    assert out.header["CF_SCALE"] == "DONE" and "ccdflow scaler: done" in str(out.header["HISTORY"])
    assert context.statuses == {"scaler": "DONE"} and "scaler" in context.timings
    assert ccd.header is header and "CF_SCALE" not in header  # the caller's frame keeps its header
    again = run_step(Scaler, out)  # a recipe never applies a step twice
    assert again.header["CF_SCALE"] == "SKIPPED"
    np.testing.assert_allclose(again.data, 6.0)


def test_no_work_is_recorded_as_skipped():
    out = run_step(Idle, make_ccd())
    assert out.header["CF_IDLE"] == "SKIPPED"
    assert "ccdflow idle: skipped (nothing to do on this frame)" in str(out.header["HISTORY"])


def test_params_layer_over_the_instrument_like_the_command_line(ccdflow_instrument):
    ccd = make_ccd(level=1.0)
    camera = ccdflow_instrument(steps={"scaler": {"factor": 5.0}})
    assert float(run_step(Scaler, ccd, instrument=camera).data[0, 0]) == 5.0
    assert float(run_step(Scaler, ccd, instrument=camera, params={"factor": 7.0}).data[0, 0]) == 7.0
    exact = run_step(Scaler, ccd, instrument=camera, params=ScaleParams())  # an object: as it is
    assert float(exact.data[0, 0]) == 2.0
    in_recipe = ccdflow_instrument(recipes={"science": [{"scaler": {"factor": 4.0}}]})
    assert float(run_step(Scaler, ccd, instrument=in_recipe).data[0, 0]) == 4.0
    with pytest.raises(ConfigError, match="factr"):
        run_step(Scaler, ccd, params={"factr": 3.0})


def test_errors_of_the_recipe_runner_are_raised():
    with pytest.raises(UnprocessableInputError, match="needs calibration bias"):
        run_step(NeedsBias, make_ccd())
    out = run_step(NeedsBias, make_ccd(level=2.0), calibrations={"bias": make_ccd(level=0.0)})
    assert out.header["CF_NEEDS"] == "DONE"
    with pytest.raises(ConfigError, match="unknown step 'nope'; registered steps: bias, bpm"):
        run_step("nope", make_ccd())


def test_an_invalid_step_class_fails_loudly():
    class Undocumented(StepParams):
        factor: float = 2.0

    class Bad(Scaler):
        name = "bad"
        Params = Undocumented

    with pytest.raises(PluginError, match="fields without a description: factor"):
        run_step(Bad, make_ccd())


def test_wrappers_of_a_plugin_module_run_around_the_step():
    module = types.ModuleType("tp_wrapping")
    seen = []

    @hookimpl(wrapper=True)
    def run_step_wrapper(step, ccd, params, calibrations, context):
        result = yield
        seen.append((step.name, result.header.get(step.status_keyword())))
        return result

    run_step_wrapper.__name__ = "run_step"
    module.run_step = run_step_wrapper
    out = run_step("trim", make_ccd(header={"TRIMSEC": "[1:60,1:40]"}), manager=plugin_manager(module))
    assert out.shape == (40, 60) and seen == [("trim", "DONE")]


# -- plugin_manager and the fakes ----------------------------------------------------------------


def test_plugin_manager_holds_the_builtins_and_nothing_else(ccdflow_plugin_manager, ccdflow_instrument):
    builtins = {ep.name for ep in builtin_entry_points()}
    assert {"builtin_steps", "builtin_instruments", "builtin_calibrations"} <= builtins
    manager = ccdflow_plugin_manager()
    assert set(manager.plugins) == builtins  # no third-party plugin, installed or not
    with_mine = ccdflow_plugin_manager(Scaler, ccdflow_instrument(name="my-cam"))
    assert with_mine.owner("step", "scaler") == with_mine.owner("instrument", "my-cam") == "ccdflow-testing"
    assert "scaler" not in manager.steps


def test_fake_instrument_and_frames(ccdflow_instrument, ccdflow_make_ccd, ccdflow_make_meta):
    camera = ccdflow_instrument(geometry={"overscan_keyword": None}, read_noise=3.0)
    assert camera.name == "fake-cam" and camera.gain == 1.5 and camera.read_noise == 3.0
    assert camera.geometry.amplifiers[0].overscan == "[61:68,1:40]"  # mappings merge, keys kept
    ccd = ccdflow_make_ccd(level=10.0, noise=1.0, uncertainty=2.0, mask=np.eye(40, 68), header={"A": 1})
    assert ccd.shape == (40, 68) and ccd.data.dtype == np.float32 and abs(ccd.data.mean() - 10) < 0.1
    assert ccd.uncertainty.array.shape == ccd.shape and ccd.mask.sum() == 40
    assert isinstance(ccd.header, fits.Header) and ccd.header["A"] == 1
    assert ccdflow_make_meta(filter="R").filter == "R"


# -- the simulated night -------------------------------------------------------------------------


def test_small_night_has_masters_products_and_a_caldb(ccdflow_night):
    night = ccdflow_night()
    assert ccdflow_night() is night  # made once per session
    assert sorted(m["type"] for m in night.masters) == ["bias", "bpm", "dark", "flat"]
    assert night.raw_dir.is_dir() and night.out.is_dir() and night.caldb_url.startswith("sqlite:///")
    (product,) = night.products
    header = fits.getheader(product)
    assert header["CF_BIAS"] == header["CF_FLAT"] == "DONE"
    records = {r["type"]: r for r in night.records()}
    for kind in ("bias", "dark", "flat", "bpm"):
        assert records[kind]["sha256"] == night.master(kind)["sha256"]
    assert night.simulated.gain == 1.5 and fits.getdata(product).shape == (64, 64)
    with pytest.raises(LookupError, match="0 masters of type 'fringe'"):
        night.master("fringe")

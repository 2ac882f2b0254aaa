"""The typed plugin face: one manager method per hook, registration through pluggy for the one
plugin being loaded, ``check_pending`` at start-up, and ``StepContext.receipts`` filled."""

from __future__ import annotations

import importlib
import inspect
import re
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.builders.reduction import MasterRef, reduce_frame
from ccdflow.framework.engine import hookspecs
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import PluginError
from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.plugins import PluginManager
from ccdflow.framework.engine.recipe import recipe_steps
from ccdflow.framework.headers.scan import scan_file
from ccdflow.framework.io.fitswrite import write_ccd
from tests.plugin_site import GOOD, FakeSite, context_for, header, isolated_plugins

ROOT = Path(__file__).resolve().parents[1]
#: hook -> the manager's typed method for it (the rest share the hook's name)
METHOD_OF = {"identify_instrument": "identify"}


@pytest.fixture
def site(tmp_path):
    with isolated_plugins() as mp:
        yield FakeSite(tmp_path / "site", mp)


# -- one typed method per hook ----------------------------------------------------------------


def test_every_hook_has_one_typed_method_and_no_raw_hook_is_exposed():
    hooks = [n for n, f in vars(hookspecs).items() if hasattr(f, f"{hookspecs.PROJECT}_spec")]
    for name in hooks:
        method = getattr(PluginManager, METHOD_OF.get(name, name))
        signature = inspect.signature(method)
        assert signature.return_annotation is not inspect.Signature.empty, name
        assert all(p.annotation is not inspect.Parameter.empty
                   for p in list(signature.parameters.values())[1:]), name
    assert not hasattr(PluginManager, "hook")


def test_only_the_manager_calls_pluggy_hooks():
    """ccdflow, its docs and the example plugin go through the typed methods."""
    plugins_py = ROOT / "ccdflow" / "framework" / "engine" / "plugins.py"
    files = [*(ROOT / "ccdflow").rglob("*.py"), *(ROOT / "examples").rglob("*.py"),
             *(ROOT / "docs").glob("*.md")]
    offenders = [f"{path.relative_to(ROOT)}:{n}" for path in files if path != plugins_py
                 for n, line in enumerate(path.read_text().splitlines(), 1)
                 if re.search(r"\.hook\b", line)]
    assert offenders == []


# -- registration through pluggy --------------------------------------------------------------

FEWER_ARGUMENTS = """
from ccdflow.framework.engine.hookspecs import hookimpl

CALLS = []


@hookimpl
def register_steps():
    CALLS.append("register_steps")


@hookimpl
def register_instruments(register):
    CALLS.append("register_instruments")  # takes the callback and registers nothing
"""


def test_register_hook_with_fewer_arguments_loads_and_registers_nothing(site):
    site.install("tp-few", {"tp_few": "tp_few_mod"}, {"tp_few_mod": FEWER_ARGUMENTS})
    manager = PluginManager(strict=True).load_entry_points()
    info = manager.plugins["tp_few"]
    assert (info.steps, info.instruments, info.calibration_types) == ([], [], [])
    assert importlib.import_module("tp_few_mod").CALLS == ["register_steps", "register_instruments"]


WATCHER = """
from ccdflow.framework.engine.hookspecs import hookimpl

CALLS = []


@hookimpl(wrapper=True)
def register_steps(register):
    CALLS.append("around")
    return (yield)
"""


def test_register_wrappers_wrap_only_their_own_plugin(site):
    # tp_a_watch loads before tp_good: a wrapper that ran for every plugin would see it.
    site.install("tp-watch", {"tp_a_watch": "tp_watch_mod"}, {"tp_watch_mod": WATCHER})
    site.install("tp-good", {"tp_good": "tp_good_mod"}, {"tp_good_mod": GOOD})
    manager = PluginManager(strict=True).load_entry_points()
    assert importlib.import_module("tp_watch_mod").CALLS == ["around"]  # its own load only
    assert manager.plugins["tp_a_watch"].steps == []
    assert manager.owner("step", "tp_scale") == "tp_good"
    assert len(manager.plugins) > 2 and "builtin_steps" in manager.plugins


LATE_FAILURE = GOOD + """

@hookimpl
def identify_instrument(header, headers):
    return "tpcam"


@hookimpl
def register_calibration_types(register):
    register(object)
"""


def test_a_failure_in_a_later_register_hook_leaves_no_trace(site):
    site.install("tp-late", {"tp_late": "tp_late_mod"}, {"tp_late_mod": LATE_FAILURE})
    manager = PluginManager().load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_late" and failure.error.startswith("PluginError")
    assert "tp_late" not in manager.plugins and manager.pm.get_plugin("tp_late") is None
    assert "tp_scale" not in manager.steps and "tpcam" not in manager.instruments
    assert "tp_late" not in manager._owner.values()
    assert manager.identify(header(INSTRUME="TPCAM-1")) == "generic"  # its identifier is gone
    with pytest.raises(PluginError, match="tp_late"):
        PluginManager(strict=True).load_entry_points()


# -- check_pending at start-up ----------------------------------------------------------------


class Misspelt:
    """An object put on pluggy directly, around PluginManager.register and its checks."""

    @hookimpl
    def register_step(self, register):
        raise AssertionError("never called")


def test_check_pending_at_start_up_fails_an_unknown_hook_with_a_hint():
    manager = PluginManager()
    manager.pm.register(Misspelt(), name="tp_direct")
    manager.load_entry_points()
    [failure] = manager.failures
    assert failure.name == "tp_direct"
    assert failure.error.startswith("invalid hook implementation: unknown hook 'register_step'")
    assert "did you mean 'register_steps'?" in failure.error
    assert manager.pm.get_plugin("tp_direct") is None and "generic" in manager.instruments
    strict = PluginManager(strict=True)
    strict.pm.register(Misspelt(), name="tp_direct")
    with pytest.raises(PluginError, match=r"tp_direct.*did you mean 'register_steps'"):
        strict.load_entry_points()


# -- run_step ---------------------------------------------------------------------------------


class LosesTheFrame:
    @hookimpl(wrapper=True)
    def run_step(self, step):
        yield
        return None


def test_run_step_that_loses_the_frame_is_a_plugin_error():
    manager = PluginManager(strict=True).load_entry_points()
    manager.register(LosesTheFrame(), "tp_lose")
    step = manager.step("trim")
    ccd = CCDData(np.ones((4, 5), np.float32), unit="adu", header=fits.Header())
    with pytest.raises(PluginError, match="run_step of step 'trim' returned no frame"):
        manager.run_step(step(), ccd, step.Params(), {}, context_for(manager.instrument("generic")))


# -- StepContext.receipts ---------------------------------------------------------------------


class ContextSpy:
    def __init__(self) -> None:
        self.receipts: dict[str, dict] = {}

    @hookimpl(wrapper=True)
    def run_step(self, step, context):
        self.receipts[step.name] = dict(context.receipts)
        return (yield)


class FakeReceipt:
    def __init__(self, kind: str, selected_id: int) -> None:
        self.kind, self.selected_id = kind, selected_id

    def summary(self) -> dict:
        return {"type": self.kind, "selected_id": self.selected_id, "scaling": None}


def test_reduce_frame_hands_the_receipts_of_the_masters_used_to_the_steps(tmp_path):
    manager = PluginManager(strict=True).load_entry_points()
    spy = ContextSpy()
    manager.register(spy, "tp_spy")
    others = [n for n, _ in recipe_steps(build(manager, instrument="generic"), "science") if n != "bias"]
    config = build(manager, instrument="generic", params=[f"{n}.skip=true" for n in others])
    raw = tmp_path / "sci.fits"
    fits.PrimaryHDU(np.arange(100, 148, dtype=np.int16).reshape(6, 8), fits.Header(
        {"IMAGETYP": "Light Frame", "EXPTIME": 10.0, "DATE-OBS": "2026-03-01T22:00:00"})).writeto(raw)
    write_ccd(CCDData(np.full((6, 8), 2.0, np.float32), unit="adu"), tmp_path / "bias.fits")
    masters = {"bias": MasterRef.load("bias", tmp_path / "bias.fits")}
    receipts = {"bias": FakeReceipt("bias", 7), "flat": FakeReceipt("flat", 9)}  # flat: unused
    ccd, _ = reduce_frame(scan_file(raw, manager), manager, config, masters, tmp_path / "red.fits",
                          receipts=receipts)
    assert spy.receipts == {"bias": {"bias": {"type": "bias", "selected_id": 7, "scaling": None}}}
    np.testing.assert_allclose(ccd.data, np.arange(98, 146).reshape(6, 8))

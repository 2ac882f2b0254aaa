"""ccdflow.testing: pytest fixtures and helpers for people who write ccdflow plugins.

Installed with ccdflow as a pytest plugin (entry point ``pytest11``), so the fixtures below are
available in any test suite without a conftest.py. pytest imports this module at start-up in
every project of the environment, so it imports nothing heavy: astropy, numpy and ccdflow's
framework are imported inside the fixtures and helpers, when a test asks for them.

Fixtures: ``ccdflow_run_step``, ``ccdflow_plugin_manager``, ``ccdflow_instrument``,
``ccdflow_make_ccd``, ``ccdflow_make_meta``, ``ccdflow_night``. The same helpers can be
imported from here (``from ccdflow.testing import run_step``). See docs/testing-plugins.md.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.instrument import Instrument
    from ccdflow.framework.engine.plugins import PluginManager
    from ccdflow.simulator import SimulationSpec
    from ccdflow.testing.night import NightRun

#: Helper name -> submodule, imported on first use (PEP 562) to keep pytest's start-up light.
_HELPERS = {
    "run_step": "steps",
    "plugin_manager": "manager", "builtin_manager": "manager",
    "fake_instrument": "fakes", "make_ccd": "fakes", "make_meta": "fakes",
    "FAKE_INSTRUMENT": "fakes", "FAKE_RAW_SHAPE": "fakes",
    "NightRun": "night", "TINY_NIGHT": "night", "reduce_simulated_night": "night",
    "simulated_spec": "night",
}

__all__ = sorted(_HELPERS)


def __getattr__(name: str) -> Any:
    if name in _HELPERS:
        return getattr(importlib.import_module(f"{__name__}.{_HELPERS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


@pytest.fixture
def ccdflow_run_step() -> Callable[..., CCDData]:
    """``run_step(step, ccd, *, params=None, calibrations=None, meta=None, instrument=None,
    context=None, manager=None) -> CCDData``: one step, run as a recipe runs it."""
    from ccdflow.testing.steps import run_step

    return run_step


@pytest.fixture
def ccdflow_plugin_manager() -> Callable[..., PluginManager]:
    """``plugin_manager(*plugins, strict=True) -> PluginManager``: the built-ins plus your
    plugin modules (or loose Step classes, Instruments, CalibrationTypes), nothing else."""
    from ccdflow.testing.manager import plugin_manager

    return plugin_manager


@pytest.fixture
def ccdflow_instrument() -> Callable[..., Instrument]:
    """``fake_instrument(**overrides) -> Instrument``: a 40x68 camera, overscan [61:68,1:40],
    trim [1:60,1:40], gain 1.5, read noise 5, saturation 60000; overrides merged in."""
    from ccdflow.testing.fakes import fake_instrument

    return fake_instrument


@pytest.fixture
def ccdflow_make_ccd() -> Callable[..., CCDData]:
    """``make_ccd(data=None, *, shape=(40, 68), level=1000.0, noise=0.0, seed=0, unit="adu",
    mask=None, uncertainty=None, header=None) -> CCDData`` (float32)."""
    from ccdflow.testing.fakes import make_ccd

    return make_ccd


@pytest.fixture
def ccdflow_make_meta() -> Callable[..., FrameMeta]:
    """``make_meta(**overrides) -> FrameMeta``: a 60 s V science frame of the generic instrument."""
    from ccdflow.testing.fakes import make_meta

    return make_meta


@pytest.fixture(scope="session")
def ccdflow_night(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., NightRun]:
    """``night(spec=None, *, instrument="generic", params=(), report=False, **spec_fields)
    -> NightRun``: a tiny simulated night reduced into a temporary OUT and SQLite caldb.

    Made once per session for each distinct set of arguments and shared: do not modify it.
    """
    from ccdflow.testing.night import reduce_simulated_night, simulated_spec

    made: dict[str, NightRun] = {}

    def night(spec: SimulationSpec | None = None, *, instrument: str | None = "generic",
              params: tuple[str, ...] = (), report: bool = False, **spec_fields: Any) -> NightRun:
        full = simulated_spec(spec, **spec_fields)
        key = repr((full.model_dump_json(), instrument, tuple(params), report))
        if key not in made:
            workdir = tmp_path_factory.mktemp("ccdflow-night")
            made[key] = reduce_simulated_night(workdir, full, instrument=instrument,
                                               params=tuple(params), report=report)
        return made[key]

    return night

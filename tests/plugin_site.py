"""Fake installed plugin distributions for the plugin-manager tests.

A :class:`FakeSite` writes plugin modules plus a ``*.dist-info`` folder (METADATA,
entry_points.txt) into a temporary folder put on ``sys.path``, so ``importlib.metadata`` finds
them exactly as it finds a pip-installed plugin. :func:`isolated_plugins` undoes it all.
"""

from __future__ import annotations

import importlib
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
from astropy.io import fits

from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.plugins import get_plugin_manager
from ccdflow.framework.engine.step import StepContext

FAKE_PREFIX = "tp_"  # every fake plugin module's name starts with this

# A well-behaved plugin: one step, one instrument identified by INSTRUME = TPCAM*.
GOOD = """
from pydantic import Field

from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.step import Step, StepParams


class ScaleParams(StepParams):
    factor: float = Field(2.0, description="Multiply every pixel by this.")


class Scaler(Step):
    name = "tp_scale"
    Params = ScaleParams

    def run(self, ccd, params, calibrations, context):
        out = ccd.copy()
        out.data = ccd.data * params.factor
        return out


def instrument(name, identify):
    return Instrument.model_validate({
        "name": name,
        "identify": identify,
        "header": {
            "frame_type": {"keyword": "IMAGETYP", "required": True},
            "exposure_time": {"keyword": "EXPTIME", "required": True},
            "date_obs": {"keyword": "DATE-OBS", "required": True},
        },
    })


@hookimpl
def register_steps(register):
    register(Scaler)


@hookimpl
def register_instruments(register):
    register(instrument("tpcam", {"INSTRUME": "TPCAM*"}))
"""


def step_module(step_name: str, params_body: str = "", base: str = "Step") -> str:
    """Source of a plugin registering one step; ``params_body`` goes into its Params."""
    return f"""
from pydantic import ConfigDict, Field

from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.step import Step, StepParams


class P(StepParams):
    {params_body or "pass"}


class S({base}):
    name = {step_name!r}
    Params = P

    def run(self, ccd, params, calibrations, context):
        return ccd


@hookimpl
def register_steps(register):
    register(S)
"""


class FakeSite:
    """A folder on sys.path where tests 'install' distributions with entry points."""

    def __init__(self, root: Path, patch: pytest.MonkeyPatch) -> None:
        self.root = root
        root.mkdir()
        patch.syspath_prepend(str(root))

    def install(
        self, dist: str, entry_points: dict[str, str], modules: dict[str, str], version="1.2.3"
    ) -> None:
        for module, source in modules.items():
            assert module.startswith(FAKE_PREFIX), "fake modules are forgotten by this prefix"
            (self.root / f"{module}.py").write_text(textwrap.dedent(source))
        info = self.root / f"{dist.replace('-', '_')}-{version}.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(
            f"Metadata-Version: 2.1\nName: {dist}\nVersion: {version}\n"
        )
        lines = "".join(f"{name} = {value}\n" for name, value in entry_points.items())
        (info / "entry_points.txt").write_text(f"[ccdflow.plugins]\n{lines}")
        importlib.invalidate_caches()


@contextmanager
def isolated_plugins() -> Iterator[pytest.MonkeyPatch]:
    """A MonkeyPatch whose undo is followed by forgetting the fake plugins.

    The order matters: restore sys.path and the environment, forget the fake plugin modules,
    then reload the cached manager, so no test leaks plugins, modules or settings into the next.
    """
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("CCDFLOW_STRICT_PLUGINS", raising=False)
        mp.delenv("CCDFLOW_DISABLE_PLUGINS", raising=False)
        yield mp
    # The next test may reuse a module name from another folder: forget every fake one.
    for module in [m for m in sys.modules if m.startswith(FAKE_PREFIX)]:
        del sys.modules[module]
    importlib.invalidate_caches()
    get_plugin_manager(reload=True)


def header(**cards) -> dict[int, fits.Header]:
    base = {"IMAGETYP": "Light Frame", "EXPTIME": 10.0, "DATE-OBS": "2026-03-01T22:00:00"}
    return {0: fits.Header({**base, **cards})}


def context_for(instrument) -> StepContext:
    meta = FrameMeta(
        path="frame.fits", frame_type="science", instrument=instrument.name, exposure_time=10.0,
        date_obs=datetime(2026, 3, 1, 22, tzinfo=UTC), shape=(4, 5),
    )
    return StepContext(meta=meta, instrument=instrument)

"""Example ccdflow plugin: steps (``pedestal``, ``fringe``), an instrument (``example-cam``) and a
calibration type (``fringe``, a fringe frame made from night-sky frames).

ccdflow imports this module through the ``ccdflow.plugins`` entry point and calls the
functions below marked with ``@hookimpl``; their names must be exactly the hook names.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import cache
from importlib.resources import files

import yaml
from astropy.io import fits

from ccdflow.plugin import CalibrationType, Instrument, Step, hookimpl
from ccdflow_example_plugin.fringe import FringeParams, FringeSubtractor, fit_fringe
from ccdflow_example_plugin.fringe_frame import FringeFrame, unit_sky
from ccdflow_example_plugin.pedestal import PedestalAdder, PedestalParams, apply_pedestal

__all__ = ["FringeFrame", "FringeParams", "FringeSubtractor", "PedestalAdder", "PedestalParams",
           "apply_pedestal", "example_cam", "fit_fringe", "unit_sky"]


@cache
def example_cam() -> Instrument:
    """The example-cam instrument, validated from the YAML shipped in this package."""
    text = files(__package__).joinpath("example_cam.yaml").read_text()
    return Instrument.model_validate(yaml.safe_load(text))


@hookimpl
def register_steps(register: Callable[[type[Step]], None]) -> None:
    register(PedestalAdder)
    register(FringeSubtractor)


@hookimpl
def register_instruments(register: Callable[[Instrument], None]) -> None:
    register(example_cam())


@hookimpl
def register_calibration_types(register: Callable[[type[CalibrationType]], None]) -> None:
    register(FringeFrame)


@hookimpl
def identify_instrument(
    header: fits.Header, headers: Mapping[int | str, fits.Header]
) -> str | None:
    # Old example-cam firmware wrote no INSTRUME card; its files are recognised by the
    # acquisition program's ORIGIN card instead, which a glob on one keyword cannot express
    # without also claiming other cameras driven by the same program.
    if "INSTRUME" not in header and str(header.get("ORIGIN", "")).startswith("ExampleSoft 1."):
        return "example-cam"
    return None

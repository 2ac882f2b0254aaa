"""The hooks a ccdflow plugin can implement. Every hook is documented in docs/plugins.md."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from pathlib import Path

    from astropy.io import fits
    from astropy.nddata import CCDData
    from pydantic import BaseModel

    from ccdflow.framework.engine.caltype import CalibrationType
    from ccdflow.framework.engine.instrument import Instrument
    from ccdflow.framework.engine.step import Step, StepContext

PROJECT = "ccdflow"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)


@hookspec
def register_steps(register: Callable[[type[Step]], None]) -> None:
    """Register Step classes by calling ``register(StepClass)`` once per step.

    Called once per plugin when the plugin manager loads it.

    :param register: callback that validates and records one Step subclass.
    """


@hookspec
def register_instruments(register: Callable[[Instrument | Path], None]) -> None:
    """Register instrument configurations by calling ``register(instrument)``.

    Called once per plugin when the plugin manager loads it (the built-ins first).

    :param register: callback taking an :class:`~ccdflow.framework.engine.instrument.Instrument`
        or the :class:`~pathlib.Path` of an instrument YAML, which may ``extends:`` an instrument
        registered before it (``generic``, or one the plugin registered earlier).
    """


@hookspec
def register_calibration_types(register: Callable[[type[CalibrationType]], None]) -> None:
    """Register calibration types (a fringe frame, a shutter map...) by calling
    ``register(CalibrationTypeClass)`` once per type.

    Called once per plugin when the plugin manager loads it. The built-in bias, dark, flat and
    bpm types are registered the same way.

    :param register: callback that validates and records one CalibrationType subclass.
    """


@hookspec(firstresult=True)
def identify_instrument(
    header: fits.Header, headers: Mapping[int | str, fits.Header]
) -> str | None:
    """Return the name of the instrument that wrote this file, or None to pass.

    Code-based identifiers run first (the first non-None answer wins); the built-in
    declarative identifier (each instrument's ``identify`` rules, most specific match
    wins) runs last.

    :param header: the primary header.
    :param headers: every HDU header, by index and by EXTNAME.
    """


@hookspec(firstresult=True)
def run_step(
    step: Step,
    ccd: CCDData,
    params: BaseModel,
    calibrations: Mapping[str, Any],
    context: StepContext,
) -> CCDData | None:
    """Run one step on one frame and return the result.

    The built-in implementation calls ``step.run``. Implement it as a wrapper
    (``@hookimpl(wrapper=True)``) to time, log or annotate every step; the framework's
    own timing, status keywords and HISTORY are written by such a wrapper.

    :param step: the Step instance to run.
    :param ccd: the frame, already carrying mask and uncertainty when present.
    :param params: the validated parameters of this step.
    :param calibrations: calibration frames by type (``bias``, ``dark``...).
    :param context: frame metadata, instrument, the caldb's selection receipt summaries
        (``context.receipts``), and the timings and statuses so far.
    """

"""Built-in calibration types (bias, dark, flat, bpm), registered as a plugin like any other."""

from __future__ import annotations

from collections.abc import Callable

from ccdflow.framework.calibrations import BUILTIN_TYPES
from ccdflow.framework.engine.caltype import CalibrationType
from ccdflow.framework.engine.hookspecs import hookimpl


@hookimpl
def register_calibration_types(register: Callable[[type[CalibrationType]], None]) -> None:
    for kind in BUILTIN_TYPES:
        register(kind)

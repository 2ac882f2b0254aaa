"""Built-in instruments: one YAML file per camera in this folder, registered as a plugin."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from ccdflow.framework.engine.errors import ConfigError, PluginError
from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.instrument_files import load_in_order

HERE = Path(__file__).parent


@cache
def builtin_instruments() -> tuple[Instrument, ...]:
    """Every YAML instrument shipped with ccdflow (files may ``extends:`` one another), validated
    once per process, each after the one it extends."""
    try:
        return tuple(inst for _, inst, _ in load_in_order(sorted(HERE.glob("*.yaml")), {}))
    except ConfigError as exc:
        raise PluginError(str(exc)) from None


@hookimpl
def register_instruments(register: Callable[[Instrument], None]) -> None:
    for instrument in builtin_instruments():
        register(instrument)

"""Built-in instruments: one YAML file per camera in this folder, registered as a plugin."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path

from pydantic import ValidationError

from ccdflow.framework.engine.config import describe_validation, load_yaml
from ccdflow.framework.engine.errors import PluginError
from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.instrument import Instrument

HERE = Path(__file__).parent


@cache
def builtin_instruments() -> tuple[Instrument, ...]:
    """Every YAML instrument shipped with ccdflow, validated once per process."""
    out = []
    for path in sorted(HERE.glob("*.yaml")):
        try:
            out.append(Instrument.model_validate(load_yaml(path)))
        except ValidationError as exc:
            raise PluginError(describe_validation(str(path), "", exc)) from None
    return tuple(out)


@hookimpl
def register_instruments(register: Callable[[Instrument], None]) -> None:
    for instrument in builtin_instruments():
        register(instrument)

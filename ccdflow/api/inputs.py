"""What every API function accepts the same way: an instrument (a name or an instrument YAML
file), ``params`` overrides as ``-p`` gives them, and a caldb (an open ``ccdflow.CalDB``, a URL or
a SQLite path)."""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccdflow.framework.engine.errors import ConfigError

if TYPE_CHECKING:
    from ccdflow.api.caldb import CalDB
    from ccdflow.caldb.database import CalDB as Database
    from ccdflow.framework.engine.plugins import PluginManager
    from ccdflow.pipeline.single import Given

#: An instrument: its name (see ``ccdflow plugins``) or an instrument YAML file.
Instrument = str | Path


def instrument_setup(instrument: Instrument | None) -> tuple[PluginManager, str | None, tuple[str, ...]]:
    """(plugins, the instrument every frame is read as or None to identify each, instrument
    files). A YAML file is used like ``--instrument-config FILE --instrument <its name>``."""
    from ccdflow.framework.engine.instrument_files import (
        command_line_instruments,
        forced_instrument,
        manager_with_files,
    )

    if instrument is not None and Path(instrument).suffix.lower() in (".yaml", ".yml"):
        files = (str(Path(instrument).resolve()),)
        manager = manager_with_files(files)
        return manager, command_line_instruments(manager)[-1], files
    manager = manager_with_files()
    return manager, forced_instrument(manager, None if instrument is None else str(instrument)), ()


def param_strings(params: Mapping[str, Any] | None) -> tuple[str, ...]:
    """``{"overscan.method": "median"}`` as the ``-p`` strings the configuration reads (values
    as JSON, which its YAML parser reads back unchanged)."""
    out = []
    for key, value in (params or {}).items():
        if key.count(".") != 1:
            raise ConfigError(f"params: {key!r}: expected 'step.param', e.g. 'overscan.method'")
        out.append(f"{key}={json.dumps(value)}")
    return tuple(out)


def given_calibrations(manager: PluginManager, calibrations: Mapping[str, Given] | None,
                       **named: Given | None) -> dict[str, Given]:
    """The calibrations a caller gave, by type (``bias=`` and the like win over the same type in
    ``calibrations``); a type no plugin registers is refused with a "did you mean", never
    ignored."""
    given = {k: v for k, v in {**(calibrations or {}), **named}.items() if v is not None}
    unknown = sorted(set(given) - set(manager.calibration_types))
    if unknown:
        from ccdflow.framework.engine.errors import did_you_mean

        raise ConfigError(f"calibrations: unknown calibration type {', '.join(map(repr, unknown))}; "
                          f"registered: {', '.join(sorted(manager.calibration_types))}"
                          f"{did_you_mean(unknown, manager.calibration_types)}")
    return given


@contextmanager
def opened(caldb: CalDB | str | Path | None) -> Iterator[Database | None]:
    """The caldb's database for the duration of a call: an open ``ccdflow.CalDB``'s own, or one
    opened from a URL or path (which must exist: an empty file is never created) and closed."""
    if caldb is None:
        yield None
        return
    from ccdflow.api.caldb import CalDB

    if isinstance(caldb, CalDB):
        yield caldb.db
        return
    db = CalDB(caldb)
    try:
        yield db.db
    finally:
        db.close()

"""Instruments written as YAML files, wherever they come from: a plugin package, the user's
instrument folder or ``--instrument-config`` on the command line. One loader for all three, so
a camera described in a file is an instrument like any other (identified from its headers,
named by ``--instrument``, with its header map, geometry, recipes and caldb rules).

``extends: NAME`` builds on an instrument registered before (a built-in, a plugin's, or another
file of the same folder): mappings are merged key by key, the child's header-value patterns
are tried before the parent's, lists and scalars replace the parent's, and ``identify``
replaces the parent's rules whole (merging them would demand the parent's cards too: a camera
without IMAGETYP could never be identified by an ``extends: generic`` file naming its INSTRUME).
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from ccdflow.framework.engine.errors import ConfigError
from ccdflow.framework.engine.instrument import Instrument

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

log = logging.getLogger("ccdflow.instruments")

#: Environment variable naming the user's instrument folder (empty: no folder).
ENV_VAR = "CCDFLOW_INSTRUMENTS"

#: Where an instrument came from, weakest first: on equal identification, the later source wins
#: (your own file over a package's description of the same camera).
PACKAGE, USER_FOLDER, COMMAND_LINE = 0, 1, 2
RANK_NAMES = {PACKAGE: "plugin package", USER_FOLDER: "user instrument folder",
              COMMAND_LINE: "--instrument-config"}


@dataclass(frozen=True)
class InstrumentOrigin:
    """Where one registered instrument came from, for config layers and for `inspect`."""

    rank: int = PACKAGE
    path: str | None = None
    extends: str | None = None
    #: the file's own ``steps:`` (the "instrument file" configuration layer)
    own_steps: Mapping[str, Any] = field(default_factory=dict)
    #: the extended instrument's ``steps:`` and who registered it (the "instrument plugin" layer)
    base_steps: Mapping[str, Any] = field(default_factory=dict)
    base_source: str | None = None


def user_instrument_dir() -> Path | None:
    """``$CCDFLOW_INSTRUMENTS`` (set but empty: none), else the platform's user config folder:
    ``$XDG_CONFIG_HOME/ccdflow/instruments`` (``~/.config/...``) on Linux,
    ``~/Library/Application Support/ccdflow/instruments`` on macOS, ``%APPDATA%`` on Windows."""
    value = os.environ.get(ENV_VAR)
    if value is not None:
        return Path(value).expanduser() if value.strip() else None
    if sys.platform == "darwin":
        base = Path.home() / "Library" / "Application Support"
    elif sys.platform == "win32":
        base = Path(os.environ.get("APPDATA") or Path.home() / "AppData" / "Roaming")
    else:
        base = Path(os.environ.get("XDG_CONFIG_HOME") or Path.home() / ".config")
    return base / "ccdflow" / "instruments"


def yaml_files(folder: Path) -> list[Path]:
    """The instrument files of a folder (``*.yaml``, ``*.yml``), sorted; none if it is absent."""
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.iterdir() if p.suffix in (".yaml", ".yml") and p.is_file())


def load_instrument_file(
    path: str | Path, registered: Mapping[str, Instrument], data: Mapping[str, Any] | None = None
) -> tuple[Instrument, Instrument | None, dict[str, Any]]:
    """One instrument YAML, complete or ``extends: <name>`` over one of ``registered`` (``data``:
    the file's mapping when the caller has read it already).

    Returns the merged instrument, the one it extends (if any) and the file's own ``steps``."""
    from ccdflow.framework.engine.config import deep_merge, load_yaml
    from ccdflow.framework.engine.config_errors import describe_validation

    data = dict(load_yaml(path) if data is None else data)
    own_steps = dict(data.get("steps") or {})
    base_name = data.pop("extends", None)
    base = None
    if base_name is not None:
        if base_name not in registered:
            raise ConfigError(f"{path}: extends: unknown instrument {base_name!r}; "
                              f"registered: {', '.join(sorted(registered))}")
        base = registered[base_name]
        parent = base.model_dump()
        if "identify" in data:
            parent.pop("identify")
        data = deep_merge(parent, data)
    try:
        return Instrument.model_validate(data), base, own_steps
    except ValidationError as exc:
        raise ConfigError(describe_validation(str(path), "", exc, Instrument)) from None


def load_in_order(
    paths: Iterable[str | Path], registered: Mapping[str, Instrument]
) -> list[tuple[Path, Instrument, InstrumentOrigin]]:
    """Load files that may extend each other, each after the one it extends (whatever the
    order given); an ``extends`` that names nothing known is a ConfigError naming the file."""
    from ccdflow.framework.engine.config import load_yaml

    known = dict(registered)
    pending: list[tuple[Path, dict[str, Any]]] = []
    for p in map(Path, paths):
        try:
            pending.append((p, load_yaml(p)))
        except ConfigError as exc:
            raise InstrumentFileError(p, str(exc)) from None
    out: list[tuple[Path, Instrument, InstrumentOrigin]] = []
    while pending:
        ready = [(p, d) for p, d in pending if d.get("extends") is None or d["extends"] in known]
        if not ready:  # the first unresolved one says which name is missing
            _load(*pending[0], known)
        for path, data in ready:
            instrument, base, steps = _load(path, data, known)
            known[instrument.name] = instrument
            out.append((path, instrument, InstrumentOrigin(
                path=str(path), extends=base.name if base else None, own_steps=steps,
                base_steps=base.steps if base else {})))
        pending = [item for item in pending if item not in ready]
    return out


class InstrumentFileError(ConfigError):
    """An instrument file that cannot be used; ``path`` names it."""

    def __init__(self, path: Path, message: str) -> None:
        super().__init__(message)
        self.path = path


def _load(path: Path, data: dict[str, Any], known: Mapping[str, Instrument]
          ) -> tuple[Instrument, Instrument | None, dict[str, Any]]:
    try:
        return load_instrument_file(path, known, data)
    except ConfigError as exc:
        raise InstrumentFileError(path, str(exc)) from None


def register_files(manager: PluginManager, paths: Sequence[str | Path], rank: int) -> None:
    """Register instrument files in ``manager``, replacing a registered instrument of the same
    name (a site's file over the package's). Command-line files fail loudly (ConfigError: exit
    2); a broken file in the user folder is reported like a broken plugin and skipped."""
    if not paths:
        return
    if rank == COMMAND_LINE:
        loaded = load_in_order(paths, manager.instruments)
    else:
        loaded, pending = [], list(paths)
        while pending:  # a broken file costs only itself (and the files extending it)
            try:
                loaded = load_in_order([*(p for p, _, _ in loaded), *pending], manager.instruments)
                pending = []
            except InstrumentFileError as exc:
                manager.report_failure(f"instrument file {exc.path}", None, str(exc))
                pending = [p for p in pending if Path(p) != exc.path]
    from ccdflow.framework.engine.frame import known_frame_types
    from ccdflow.framework.headers.frame_type import check_frame_types

    known = known_frame_types(manager)  # this manager's: the process's may be the one loading
    for path, instrument, origin in list(loaded):
        try:  # the types a file's path patterns and rules give, once every plugin's type is known
            check_frame_types(instrument, str(path), known)
        except ConfigError as exc:
            if rank == COMMAND_LINE:
                raise
            manager.report_failure(f"instrument file {path}", None, str(exc))
            loaded.remove((path, instrument, origin))
    for _, instrument, origin in loaded:
        base_source = None if origin.extends is None else manager.owner("instrument", origin.extends)
        if instrument.name in manager.instruments:
            log.info("instrument %s from %s replaces the one from %s", instrument.name, origin.path,
                     manager.owner("instrument", instrument.name))
        manager.add_file_instrument(instrument, replace(origin, rank=rank, base_source=base_source))


_MANAGERS: dict[tuple[tuple[str, ...], bool | None], PluginManager] = {}


def manager_with_files(files: Iterable[str | Path] = (), strict: bool | None = None) -> PluginManager:
    """The process's plugin manager, plus the instruments of ``files`` (``--instrument-config``).

    Without files it is :func:`~ccdflow.framework.engine.plugins.get_plugin_manager`'s; with
    files, a manager of its own per set of files (built once per process: a file's instrument
    must not leak into a run that did not ask for it)."""
    from ccdflow.framework.engine.plugins import PluginManager, get_plugin_manager

    resolved = tuple(str(Path(f).resolve()) for f in files)
    if not resolved:
        return get_plugin_manager(strict=strict)
    key = (resolved, strict)
    if key not in _MANAGERS:
        manager = PluginManager(strict=strict).load_entry_points()
        register_files(manager, resolved, COMMAND_LINE)
        _MANAGERS[key] = manager
    return _MANAGERS[key]


def command_line_instruments(manager: PluginManager) -> list[str]:
    """Names of the instruments given by ``--instrument-config`` files, in registration order."""
    return [n for n, o in manager.origins.items() if o.rank == COMMAND_LINE]


def default_instrument(manager: PluginManager) -> str:
    """The instrument a configuration is resolved for when none is named: the one given by a
    single ``--instrument-config`` file, else ``generic``."""
    given = command_line_instruments(manager)
    return given[0] if len(given) == 1 else "generic"


def forced_instrument(manager: PluginManager, name: str | None) -> str | None:
    """The instrument every frame is read with, or None to identify each frame.

    ``--instrument NAME`` forces NAME. Otherwise a ``--instrument-config`` file whose instrument
    has no ``identify`` rules is forced (it could never be identified, and the user named it to
    be used); two such files are ambiguous: a ConfigError asks for ``--instrument``."""
    if name is not None:
        manager.instrument(name)  # an unknown name is a configuration error now
        return name
    silent = [n for n in command_line_instruments(manager) if not manager.instruments[n].identify]
    if len(silent) > 1:
        raise ConfigError(f"instruments {', '.join(silent)} come from --instrument-config files "
                          "without `identify:` rules; say which to use with --instrument NAME")
    return silent[0] if silent else None


def unclaimed(manager: PluginManager, used: Mapping[str, int]) -> list[str]:
    """Warnings for the ``--instrument-config`` instruments that read none of the frames (``used``:
    frames per instrument): a file whose ``identify`` rules match nothing is otherwise silently
    unused, and the frames are reduced with another instrument's rules."""
    out = []
    for name in command_line_instruments(manager):
        if used.get(name):
            continue
        origin, rules = manager.origins[name], manager.instruments[name].identify
        others = ", ".join(f"{n} ({k})" for n, k in sorted(used.items())) or "none"
        out.append(f"instrument {name} from --instrument-config {origin.path} read none of the "
                   f"{sum(used.values())} frames: its identify rules {dict(rules)} match no file "
                   f"(frames were read as: {others}); check them with `ccdflow inspect "
                   f"--instrument-config {origin.path} FILE`")
    return out

"""What a night run needs to know, in a form that travels to Dask workers, and the per-process
environment (plugins, configs, caldb connection, loaded masters) built from it once."""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ccdflow.framework.engine.config import ResolvedConfig, build

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager


@dataclass(frozen=True)
class RunSpec:
    """Everything a worker needs: small, hashable, picklable."""

    outdir: str
    caldb_url: str
    #: every frame is read as this instrument; None: each frame's, identified from its header
    instrument: str | None = None
    #: ``--instrument-config`` files: their instruments join the plugins' in every process
    instrument_files: tuple[str, ...] = ()
    config_files: tuple[str, ...] = ()
    params: tuple[str, ...] = ()
    force: bool = False
    #: ``--caldb-as-of``: choose calibrations with the caldb as it was then (naive UTC); the
    #: masters this run builds are written but not registered (they would land in a past).
    caldb_as_of: datetime | None = None

    @property
    def reduced_dir(self) -> Path:
        return Path(self.outdir) / "reduced"

    @property
    def masters_dir(self) -> Path:
        return Path(self.outdir) / "masters"

    def made_here(self, path: str | Path) -> bool:
        """True for a file this run's outputs hold (a master, a product, a quicklook, a run's
        report): when OUT lies inside RAWDIR, a re-run must not take its own masters and products
        for raw frames."""
        # realpath, not Path.resolve: a symbolic-link loop in RAWDIR must be reported, not raise
        resolved = Path(os.path.realpath(path))
        return any(resolved.is_relative_to(Path(os.path.realpath(self.outdir)) / sub)
                   for sub in ("masters", "reduced", "quicklook", "runs"))


@dataclass
class Environment:
    """One per process and spec: building plugins and configs costs ~0.3 s, masters more."""

    spec: RunSpec
    manager: PluginManager
    configs: dict[str, ResolvedConfig] = field(default_factory=dict)
    masters: dict[int, Any] = field(default_factory=dict)
    _db: Any = None

    def config(self, instrument: str | None = None) -> ResolvedConfig:
        """The resolved config for a frame's instrument (forced by --instrument when given)."""
        name = self.spec.instrument or instrument or "generic"
        if name not in self.configs:
            self.configs[name] = build(self.manager, instrument=name,
                                       config_files=self.spec.config_files, params=self.spec.params)
        return self.configs[name]

    @property
    def db(self) -> Any:
        if self._db is None:
            from ccdflow.caldb import CalDB

            self._db = CalDB(self.spec.caldb_url)
        return self._db

    def master(self, kind: str, record: dict[str, Any]) -> Any:
        """A master loaded once per process, keyed by caldb id."""
        from ccdflow.framework.builders.reduction import MasterRef

        if record["id"] not in self.masters:
            self.masters[record["id"]] = MasterRef.load(kind, record["path"], record["id"],
                                                        record["sha256"])
        return self.masters[record["id"]]


def make_spec(outdir: str | Path, caldb_url: str | Path | None, instrument: str | None = None,
              instrument_files: Sequence[str | Path] = (), config_files: Sequence[str | Path] = (),
              params: Sequence[str] = (), force: bool = False, caldb_as_of: datetime | None = None,
              *, strict: bool | None = None) -> RunSpec:
    """A night's spec, checked before any work: the caldb resolved (``--caldb``, else
    $CCDFLOW_CALDB, else the default file), created or upgraded if needed; the configuration
    built once, so a bad parameter is a ConfigError (exit 2) now, not a failure per frame later."""
    from ccdflow.caldb import CalDB
    from ccdflow.caldb.connection import resolve_url
    from ccdflow.framework.engine.instrument_files import forced_instrument, manager_with_files

    manager = manager_with_files(instrument_files, strict)
    forced = forced_instrument(manager, instrument)
    build(manager, instrument=forced, config_files=config_files, params=params)
    url = resolve_url(caldb_url)
    CalDB.create(url).close()
    return RunSpec(outdir=str(Path(outdir).resolve()), caldb_url=url, instrument=forced,
                   instrument_files=tuple(str(Path(f).resolve()) for f in instrument_files),
                   config_files=tuple(str(Path(c).resolve()) for c in config_files),
                   params=tuple(params), force=force, caldb_as_of=caldb_as_of)


_ENVIRONMENTS: dict[RunSpec, Environment] = {}
_LOCK = threading.Lock()


def environment(spec: RunSpec) -> Environment:
    """The process's environment for a spec (built on first use)."""
    with _LOCK:
        env = _ENVIRONMENTS.get(spec)
        if env is None:
            from ccdflow.framework.engine.instrument_files import manager_with_files

            env = _ENVIRONMENTS[spec] = Environment(spec, manager_with_files(spec.instrument_files))
        return env


def forget_environments() -> None:
    """Close caldb connections (end of a run in the driver process)."""
    with _LOCK:
        for env in _ENVIRONMENTS.values():
            if env._db is not None:
                env._db.close()
        _ENVIRONMENTS.clear()

"""Plugin manager: loads ``ccdflow.plugins`` entry points, collects steps, instruments and
calibration types, and is the only caller of pluggy's hooks (one typed method per hook)."""

from __future__ import annotations

import difflib
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import EntryPoint, entry_points
from typing import TYPE_CHECKING, Any

import pluggy

from ccdflow.framework.engine import hookspecs
from ccdflow.framework.engine.errors import PluginError
from ccdflow.framework.engine.identifier import DeclarativeIdentifier
from ccdflow.framework.engine.instrument_files import (
    USER_FOLDER,
    register_files,
    user_instrument_dir,
    yaml_files,
)
from ccdflow.framework.engine.plugin_registry import PluginInfo, Registry
from ccdflow.framework.engine.step import StepRunnerPlugin

if TYPE_CHECKING:
    from pathlib import Path

    from astropy.io import fits
    from astropy.nddata import CCDData
    from pydantic import BaseModel

    from ccdflow.framework.engine.caltype import CalibrationType
    from ccdflow.framework.engine.instrument import Instrument
    from ccdflow.framework.engine.step import Step, StepContext

log = logging.getLogger("ccdflow.plugins")
ENTRY_POINT_GROUP = "ccdflow.plugins"


@dataclass
class PluginFailure:
    """A plugin that could not be loaded, with the reason."""

    name: str
    distribution: str | None
    error: str


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager(Registry):
    """Typed face over pluggy: one method per hook, and what the plugins registered."""

    def __init__(self, *, strict: bool | None = None, disabled: set[str] | None = None) -> None:
        super().__init__()
        self.strict = _env_flag("CCDFLOW_STRICT_PLUGINS") if strict is None else strict
        env_disabled = {n.strip() for n in os.environ.get("CCDFLOW_DISABLE_PLUGINS", "").split(",")}
        self.disabled = (disabled or set()) | {n for n in env_disabled if n}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.blocked: list[str] = []
        self.pm.register(StepRunnerPlugin(), name="ccdflow.framework.engine.step")
        self.pm.register(DeclarativeIdentifier(self.instruments, self.origins),
                         name="ccdflow.framework.identify")

    # -- loading ---------------------------------------------------------------
    def load_entry_points(self) -> PluginManager:
        """Import every ``ccdflow.plugins`` entry point (built-ins first), register it, then
        :meth:`check_pending`."""
        for ep in sorted(entry_points(group=ENTRY_POINT_GROUP), key=_builtin_first):
            dist = ep.dist.name if ep.dist else None
            if ep.name in self.disabled or (dist is not None and dist in self.disabled):
                self.blocked.append(ep.name)
                log.info("plugin %s (%s) blocked by CCDFLOW_DISABLE_PLUGINS", ep.name, dist)
                continue
            loaded = self.plugins.get(ep.name)
            if loaded is not None and loaded.distribution == dist:
                continue  # loading twice is harmless
            try:
                module = ep.load()
            # A broken plugin must not take the host down; SystemExit too, since a plugin
            # that calls sys.exit() at import would otherwise end every ccdflow command.
            except (Exception, SystemExit) as exc:
                self._fail(ep.name, dist, f"{type(exc).__name__}: {exc}")
                continue
            version = ep.dist.version if ep.dist else None
            self.register(module, ep.name, dist, version)
        self.check_pending()
        folder = user_instrument_dir()
        if folder is not None:
            register_files(self, yaml_files(folder), USER_FOLDER)
        return self

    def register(
        self, plugin: Any, name: str, distribution: str | None = None, version: str | None = None
    ) -> None:
        """Register one plugin object and collect its steps, instruments and calibration types.

        Anything wrong (a misspelt or mistyped hook, an invalid step or instrument, a
        name already taken) is reported in ``failures`` and leaves no trace of the
        plugin, or raises :class:`PluginError` in strict mode.
        """
        if self.pm.has_plugin(name) or self.pm.is_registered(plugin):
            owner = self.plugins.get(name) or self._info_of(plugin)
            by = f" by {owner.distribution or owner.name}" if owner else ""
            self._fail(name, distribution, f"plugin name or object already registered{by}")
            return
        try:
            self.pm.register(plugin, name=name)
            unknown = _unknown_hook(self.pm, plugin)
            if unknown:
                raise pluggy.PluginValidationError(plugin, unknown)
        except Exception as exc:  # e.g. pluggy.PluginValidationError: a bad hookimpl
            if self.pm.get_plugin(name) is plugin:
                self.pm.unregister(name=name)
            what = "invalid hook implementation" if isinstance(
                exc, pluggy.PluginValidationError) else type(exc).__name__
            self._fail(name, distribution, f"{what}: {exc}")
            return
        info = PluginInfo(name, distribution, version)
        self.plugins[name] = info
        try:
            self.register_steps(plugin, lambda s: self._add_step(s, info))
            self.register_instruments(plugin, lambda x: self._add_instrument(x, info))
            self.register_calibration_types(plugin, lambda c: self._add_calibration_type(c, info))
        except Exception as exc:  # a plugin registering garbage is reported, not fatal
            self._withdraw(name)
            self._fail(name, distribution, f"{type(exc).__name__}: {exc}")

    def check_pending(self) -> None:
        """pluggy's ``check_pending``: a registered implementation of no hook (one that did not
        come through :meth:`register`, which checks each plugin) fails its plugin, with a hint."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) or repr(exc.plugin)
                info = self.plugins.get(name)
                message = _unknown_hook(self.pm, exc.plugin) or str(exc)
                self._withdraw(name)
                self._fail(name, info.distribution if info else None,
                           f"invalid hook implementation: {message}")

    def _info_of(self, plugin: Any) -> PluginInfo | None:
        name = self.pm.get_name(plugin)
        return self.plugins.get(name) if name else None

    def report_failure(self, name: str, dist: str | None, error: str) -> None:
        """A contribution that cannot be used (a plugin, a broken instrument file in the user's
        folder): logged and listed by `ccdflow plugins`, or raised in strict mode."""
        self._fail(name, dist, error)

    def _fail(self, name: str, dist: str | None, error: str) -> None:
        if self.strict:
            raise PluginError(
                f"plugin {name!r} ({dist or 'unknown distribution'}) failed: {error}"
            )
        log.warning("plugin %s (%s) skipped: %s", name, dist or "unknown distribution", error)
        self.failures.append(PluginFailure(name, dist, error))

    def _withdraw(self, name: str) -> None:
        """Unregister a plugin and forget everything it contributed."""
        if self.pm.has_plugin(name):
            self.pm.unregister(name=name)
        self._forget(name)

    # -- the hooks, one typed method each ----------------------------------------
    def register_steps(self, plugin: Any, register: Callable[[type[Step]], None]) -> None:
        """Call ``plugin``'s ``register_steps`` (that plugin's alone: see :func:`_only`)."""
        _only(self.pm, plugin, "register_steps")(register=register)

    def register_instruments(self, plugin: Any, register: Callable[[Instrument | Path], None]) -> None:
        """Call ``plugin``'s ``register_instruments``."""
        _only(self.pm, plugin, "register_instruments")(register=register)

    def register_calibration_types(
        self, plugin: Any, register: Callable[[type[CalibrationType]], None]
    ) -> None:
        """Call ``plugin``'s ``register_calibration_types``."""
        _only(self.pm, plugin, "register_calibration_types")(register=register)

    def identify(self, headers: Mapping[int | str, fits.Header]) -> str | None:
        """Name of the instrument that claims these headers, or None."""
        name: str | None = self.pm.hook.identify_instrument(header=headers[0], headers=headers)
        return name

    def run_step(self, step: Step, ccd: CCDData, params: BaseModel,
                 calibrations: Mapping[str, CCDData | None], context: StepContext) -> CCDData:
        """Run one step through every ``run_step`` wrapper (bookkeeping included)."""
        result: CCDData | None = self.pm.hook.run_step(
            step=step, ccd=ccd, params=params, calibrations=calibrations, context=context)
        if result is None:  # only a wrapper or a replacement implementation can lose the frame
            raise PluginError(f"run_step of step {step.name!r} returned no frame (a plugin's "
                              "run_step implementation or wrapper returned None)")
        return result


def _builtin_first(ep: EntryPoint) -> tuple[int, str]:
    return (0 if ep.value.startswith("ccdflow.") else 1, ep.name)


def _only(pm: pluggy.PluginManager, plugin: Any, hook: str) -> pluggy.HookCaller:
    """The hook as implemented by ``plugin`` alone: registration runs once per plugin, when it
    loads, so no other plugin's implementation (or wrapper) may run or register in its name.
    pluggy passes an implementation only the arguments it names."""
    return pm.subset_hook_caller(hook, [p for p in pm.get_plugins() if p is not plugin])


_HOOK_NAMES = sorted(
    n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT}_spec")
)


def _unknown_hook(pm: pluggy.PluginManager, plugin: Any) -> str | None:
    """What ``check_pending`` would refuse in ``plugin`` (an implementation of no hook), with a
    did-you-mean for a misspelt hook name; None when every implementation has its hook."""
    for caller in pm.get_hookcallers(plugin) or []:
        if caller.has_spec():
            continue
        for impl in caller.get_hookimpls():
            if impl.plugin is plugin and not impl.optionalhook:
                close = difflib.get_close_matches(caller.name, _HOOK_NAMES, n=1)
                hint = f"; did you mean {close[0]!r}?" if close else ""
                return f"unknown hook {caller.name!r}{hint} (hooks: {', '.join(_HOOK_NAMES)})"
    return None


_MANAGER: PluginManager | None = None


def get_plugin_manager(*, reload: bool = False, strict: bool | None = None) -> PluginManager:
    """The process-wide manager, loaded from entry points on first use."""
    global _MANAGER
    if _MANAGER is None or reload or (strict is not None and strict != _MANAGER.strict):
        _MANAGER = PluginManager(strict=strict).load_entry_points()
    return _MANAGER

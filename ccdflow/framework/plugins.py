"""Plugin manager: loads ``ccdflow.plugins`` entry points and collects steps and instruments."""

from __future__ import annotations

import difflib
import fnmatch
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from importlib.metadata import EntryPoint, entry_points
from typing import Any

import pluggy
from astropy.io import fits

from ccdflow.framework import hookspecs
from ccdflow.framework.caltype import CalibrationType, validate_calibration_type
from ccdflow.framework.errors import ConfigError, PluginError
from ccdflow.framework.hookspecs import hookimpl
from ccdflow.framework.instrument import Instrument
from ccdflow.framework.step import Step, StepRunnerPlugin, validate_step_class

log = logging.getLogger("ccdflow.plugins")
ENTRY_POINT_GROUP = "ccdflow.plugins"


@dataclass
class PluginInfo:
    """One loaded plugin and what it contributed."""

    name: str
    distribution: str | None
    version: str | None
    steps: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    calibration_types: list[str] = field(default_factory=list)


@dataclass
class PluginFailure:
    """A plugin that could not be loaded, with the reason."""

    name: str
    distribution: str | None
    error: str


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


class PluginManager:
    """Typed face over pluggy: one method per thing ccdflow asks of its plugins."""

    def __init__(self, *, strict: bool | None = None, disabled: set[str] | None = None) -> None:
        self.strict = _env_flag("CCDFLOW_STRICT_PLUGINS") if strict is None else strict
        env_disabled = {n.strip() for n in os.environ.get("CCDFLOW_DISABLE_PLUGINS", "").split(",")}
        self.disabled = (disabled or set()) | {n for n in env_disabled if n}
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self.plugins: dict[str, PluginInfo] = {}
        self.failures: list[PluginFailure] = []
        self.blocked: list[str] = []
        self.steps: dict[str, type[Step]] = {}
        self.instruments: dict[str, Instrument] = {}
        self.calibration_types: dict[str, type[CalibrationType]] = {}
        self._owner: dict[str, str] = {}
        self.pm.register(StepRunnerPlugin(), name="ccdflow.framework.step")
        self.pm.register(_DeclarativeIdentifier(self), name="ccdflow.framework.identify")

    # -- loading ---------------------------------------------------------------
    def load_entry_points(self) -> PluginManager:
        """Import every ``ccdflow.plugins`` entry point (built-ins first) and register it."""
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
        return self

    def register(
        self, plugin: Any, name: str, distribution: str | None = None, version: str | None = None
    ) -> None:
        """Register one plugin object and collect its steps and instruments.

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
            self._check_hooks(plugin)
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
            for impl in self.pm.hook.register_steps.get_hookimpls():
                if impl.plugin_name == name and not _is_wrapper(impl):
                    impl.function(register=lambda s, i=info: self._add_step(s, i))
            for impl in self.pm.hook.register_instruments.get_hookimpls():
                if impl.plugin_name == name and not _is_wrapper(impl):
                    impl.function(register=lambda x, i=info: self._add_instrument(x, i))
            for impl in self.pm.hook.register_calibration_types.get_hookimpls():
                if impl.plugin_name == name and not _is_wrapper(impl):
                    impl.function(register=lambda c, i=info: self._add_calibration_type(c, i))
        except Exception as exc:  # a plugin registering garbage is reported, not fatal
            self._forget(info)
            self.pm.unregister(name=name)
            self._fail(name, distribution, f"{type(exc).__name__}: {exc}")

    def _check_hooks(self, plugin: Any) -> None:
        """``check_pending`` for one plugin, with a did-you-mean for misspelt hook names."""
        for caller in self.pm.get_hookcallers(plugin) or []:
            if caller.has_spec():
                continue
            for impl in caller.get_hookimpls():
                if impl.plugin is plugin and not impl.optionalhook:
                    close = difflib.get_close_matches(caller.name, _HOOK_NAMES, n=1)
                    hint = f"; did you mean {close[0]!r}?" if close else ""
                    raise pluggy.PluginValidationError(
                        plugin,
                        f"unknown hook {caller.name!r}{hint} "
                        f"(hooks: {', '.join(_HOOK_NAMES)})",
                    )

    def _info_of(self, plugin: Any) -> PluginInfo | None:
        name = self.pm.get_name(plugin)
        return self.plugins.get(name) if name else None

    def _fail(self, name: str, dist: str | None, error: str) -> None:
        if self.strict:
            raise PluginError(
                f"plugin {name!r} ({dist or 'unknown distribution'}) failed: {error}"
            )
        log.warning("plugin %s (%s) skipped: %s", name, dist or "unknown distribution", error)
        self.failures.append(PluginFailure(name, dist, error))

    def _forget(self, info: PluginInfo) -> None:
        for step in info.steps:
            self.steps.pop(step, None)
            self._owner.pop("step:" + step, None)
        for inst in info.instruments:
            self.instruments.pop(inst, None)
            self._owner.pop("instrument:" + inst, None)
        for kind in info.calibration_types:
            self.calibration_types.pop(kind, None)
            self._owner.pop("calibration type:" + kind, None)
        self.plugins.pop(info.name, None)

    def _add_step(self, step: type[Step], info: PluginInfo) -> None:
        validate_step_class(step)
        if step.name in self.steps:
            owner = self._owner["step:" + step.name]
            raise PluginError(f"step {step.name!r} is already registered by plugin {owner!r}")
        # The status keyword is how a re-run knows a step was applied: two steps sharing
        # one would make the second look done and be skipped.
        keyword = step.status_keyword()
        for other in self.steps.values():
            if other.status_keyword() == keyword:
                raise PluginError(
                    f"step {step.name!r} has status keyword {keyword}, already used by step "
                    f"{other.name!r}; its first five letters must differ"
                )
        self.steps[step.name] = step
        self._owner["step:" + step.name] = info.name
        info.steps.append(step.name)

    def _add_instrument(self, instrument: Instrument, info: PluginInfo) -> None:
        if not isinstance(instrument, Instrument):
            raise PluginError(
                f"register_instruments expects an Instrument, got {type(instrument).__name__}"
            )
        if instrument.name in self.instruments:
            owner = self._owner["instrument:" + instrument.name]
            raise PluginError(f"instrument {instrument.name!r} is already registered by {owner!r}")
        self.instruments[instrument.name] = instrument
        self._owner["instrument:" + instrument.name] = info.name
        info.instruments.append(instrument.name)

    def _add_calibration_type(self, cls: type[CalibrationType], info: PluginInfo) -> None:
        validate_calibration_type(cls)
        if cls.name in self.calibration_types:
            owner = self._owner["calibration type:" + cls.name]
            raise PluginError(f"calibration type {cls.name!r} is already registered by {owner!r}")
        tags = {c.tag(): c.name for c in self.calibration_types.values()}
        if cls.tag() in tags:
            raise PluginError(f"calibration type {cls.name!r} has card tag {cls.tag()}, already used "
                              f"by {tags[cls.tag()]!r}")
        self.calibration_types[cls.name] = cls
        self._owner["calibration type:" + cls.name] = info.name
        info.calibration_types.append(cls.name)

    # -- queries ---------------------------------------------------------------
    def calibration_type(self, name: str) -> type[CalibrationType]:
        try:
            return self.calibration_types[name]
        except KeyError:
            raise ConfigError(f"unknown calibration type {name!r}; registered: "
                              f"{', '.join(sorted(self.calibration_types))}") from None

    def step(self, name: str) -> type[Step]:
        try:
            return self.steps[name]
        except KeyError:
            raise ConfigError(
                f"unknown step {name!r}; registered steps: {', '.join(sorted(self.steps))}"
            ) from None

    def instrument(self, name: str) -> Instrument:
        try:
            return self.instruments[name]
        except KeyError:
            raise ConfigError(
                f"unknown instrument {name!r}; registered: {', '.join(sorted(self.instruments))}"
            ) from None

    def owner(self, kind: str, name: str) -> str:
        return self._owner[f"{kind}:{name}"]

    def identify(self, headers: Mapping[int | str, fits.Header]) -> str | None:
        """Name of the instrument that claims these headers, or None."""
        return self.pm.hook.identify_instrument(header=headers[0], headers=headers)

    @property
    def hook(self) -> Any:
        return self.pm.hook


def _builtin_first(ep: EntryPoint) -> tuple[int, str]:
    return (0 if ep.value.startswith("ccdflow.") else 1, ep.name)


def _is_wrapper(impl: pluggy.HookImpl) -> bool:
    return bool(impl.wrapper or impl.hookwrapper)


_HOOK_NAMES = sorted(
    n for n in dir(hookspecs) if hasattr(getattr(hookspecs, n), f"{hookspecs.PROJECT}_spec")
)


class _DeclarativeIdentifier:
    """Matches each instrument's ``identify`` glob rules; the most specific match wins.

    Specificity is the number of keywords in the rule, then the number of literal
    (non-wildcard) characters in the patterns that matched: ``INSTRUME: 'EXAMPLECAM*'``
    beats ``IMAGETYP: '*'``. Equal scores go to the instrument registered first.
    """

    def __init__(self, manager: PluginManager) -> None:
        self.manager = manager

    @hookimpl(trylast=True)
    def identify_instrument(self, header: fits.Header, headers: Mapping[int | str, fits.Header]):
        best: tuple[tuple[int, int], str] | None = None
        for name, inst in self.manager.instruments.items():
            if not inst.identify:
                continue
            literal = 0
            for key, patterns in inst.identify.items():
                matched = _matching_pattern(headers, key, patterns)
                if matched is None:
                    break
                literal += len(matched.replace("*", "").replace("?", ""))
            else:
                score = (len(inst.identify), literal)
                if best is None or score > best[0]:
                    best = (score, name)
        return None if best is None else best[1]


def _matching_pattern(
    headers: Mapping[int | str, fits.Header], key: str, patterns: list[str]
) -> str | None:
    """The first of ``patterns`` that the first header holding ``key`` matches, or None."""
    for header in headers.values():
        if key in header:
            value = str(header[key]).strip().lower()
            return next((p for p in patterns if fnmatch.fnmatchcase(value, p.lower())), None)
    return None


_MANAGER: PluginManager | None = None


def get_plugin_manager(*, reload: bool = False, strict: bool | None = None) -> PluginManager:
    """The process-wide manager, loaded from entry points on first use."""
    global _MANAGER
    if _MANAGER is None or reload or (strict is not None and strict != _MANAGER.strict):
        _MANAGER = PluginManager(strict=strict).load_entry_points()
    return _MANAGER

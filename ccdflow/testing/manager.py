"""A plugin manager holding ccdflow's built-ins plus only the plugins a test names.

``get_plugin_manager()`` loads every installed plugin, so a test run on a machine where some
other observatory's plugin is installed would see its steps, instruments and ``run_step``
wrappers. These managers leave everything else out, and are strict: a problem with the
plugin under test raises instead of being logged and skipped.
"""

from __future__ import annotations

import importlib
from functools import cache
from typing import TYPE_CHECKING, Any

from ccdflow.framework.engine.hookspecs import hookimpl  # pluggy only: light to import

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager
    from ccdflow.framework.engine.step import Step

_WITH_STEP: dict[type[Step], PluginManager] = {}


def builtin_entry_points() -> list[Any]:
    """ccdflow's own ``ccdflow.plugins`` entry points (module under ``ccdflow.``), by name."""
    from importlib.metadata import entry_points

    from ccdflow.framework.engine.plugins import ENTRY_POINT_GROUP

    return sorted((ep for ep in entry_points(group=ENTRY_POINT_GROUP)
                   if ep.module.startswith("ccdflow.")), key=lambda ep: ep.name)


def plugin_manager(*plugins: Any, strict: bool = True) -> PluginManager:
    """A new manager with the built-ins and ``plugins``, registered in the order given.

    Each plugin is a module (or any object with ``@hookimpl`` functions), an importable module
    name, or a single contribution: a Step subclass, an Instrument, a CalibrationType
    subclass. Contributions are gathered into one plugin named ``ccdflow-testing``; modules
    are registered under their ``__name__``, other objects under their class's name.
    """
    from ccdflow.framework.engine.plugins import PluginManager

    manager = PluginManager(strict=strict)
    for ep in builtin_entry_points():
        dist = ep.dist
        manager.register(ep.load(), ep.name, dist.name if dist else "ccdflow",
                         dist.version if dist else None)
    contributions = _Contributions()
    for plugin in plugins:
        if isinstance(plugin, str):
            plugin = importlib.import_module(plugin)
        if not contributions.take(plugin):
            manager.register(plugin, getattr(plugin, "__name__", type(plugin).__name__))
    if contributions:
        manager.register(contributions, "ccdflow-testing", "ccdflow-testing")
    return manager


@cache
def builtin_manager() -> PluginManager:
    """The built-ins only, made once per process (a manager is read-only once loaded)."""
    return plugin_manager()


def manager_with(step: type[Step]) -> PluginManager:
    """The built-in manager when it holds ``step``, else the built-ins plus ``step`` (made once
    per step class: a test module runs its step many times)."""
    manager = builtin_manager()
    if manager.steps.get(step.name) is step:
        return manager
    if step not in _WITH_STEP:
        _WITH_STEP[step] = plugin_manager(step)
    return _WITH_STEP[step]


class _Contributions:
    """A plugin made on the fly from loose steps, instruments and calibration types."""

    def __init__(self) -> None:
        self.steps: list[Any] = []
        self.instruments: list[Any] = []
        self.calibration_types: list[Any] = []

    def __bool__(self) -> bool:
        return bool(self.steps or self.instruments or self.calibration_types)

    def take(self, item: Any) -> bool:
        """Keep ``item`` when it is a single contribution; False for a whole plugin."""
        from ccdflow.framework.engine.caltype import CalibrationType
        from ccdflow.framework.engine.instrument import Instrument
        from ccdflow.framework.engine.step import Step

        if isinstance(item, type) and issubclass(item, Step):
            self.steps.append(item)
        elif isinstance(item, Instrument):
            self.instruments.append(item)
        elif isinstance(item, type) and issubclass(item, CalibrationType):
            self.calibration_types.append(item)
        else:
            return False
        return True

    @hookimpl
    def register_steps(self, register: Any) -> None:
        for step in self.steps:
            register(step)

    @hookimpl
    def register_instruments(self, register: Any) -> None:
        for instrument in self.instruments:
            register(instrument)

    @hookimpl
    def register_calibration_types(self, register: Any) -> None:
        for kind in self.calibration_types:
            register(kind)

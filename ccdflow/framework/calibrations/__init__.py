"""The built-in calibration types, and how the rest of ccdflow finds a type by name.

They live in the framework because instruments take their default recipes and caldb rules from
them; they are registered through ``register_calibration_types`` like any plugin's types
(see ``ccdflow.plugins.calibrations``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ccdflow.framework.calibrations.bias import Bias
from ccdflow.framework.calibrations.bpm import BadPixelMask
from ccdflow.framework.calibrations.dark import Dark
from ccdflow.framework.calibrations.flat import Flat
from ccdflow.framework.engine.caltype import CalibrationType

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

BUILTIN_TYPES: tuple[type[CalibrationType], ...] = (Bias, Dark, Flat, BadPixelMask)


def _registered(manager: PluginManager | None) -> list[type[CalibrationType]]:
    """The types of ``manager``, else of the process's plugin manager. A manager holding no
    types at all (a test's bare manager with one plugin) falls back to the process's."""
    if manager is None or not manager.calibration_types:
        from ccdflow.framework.engine.plugins import get_plugin_manager

        manager = get_plugin_manager()
    return list(manager.calibration_types.values())


def find_type(name: str, manager: PluginManager | None = None) -> type[CalibrationType] | None:
    """The registered type called ``name``, or None: the caldb may hold masters of a type no
    installed plugin knows, and must still list, plot and ingest them."""
    return next((t for t in _registered(manager) if t.name == name), None)


def calibration_type(name: str, manager: PluginManager | None = None) -> type[CalibrationType]:
    """The registered type called ``name`` (the process's plugin manager unless one is given)."""
    found = find_type(name, manager)
    if found is None:
        from ccdflow.framework.engine.errors import ConfigError, did_you_mean

        names = sorted(t.name for t in _registered(manager))
        raise ConfigError(f"unknown calibration type {name!r}; registered: {', '.join(names)}"
                          f"{did_you_mean(name, names)}")
    return found


def card_tag(kind: str) -> str:
    """The provenance card tag of ``kind`` (``BIAS`` in CF_BIASF): the registered type's, or
    the name's first four letters for a type no installed plugin knows."""
    found = find_type(kind)
    return found.tag() if found is not None else kind.upper()[:4]


def for_frame_type(frame_type: str, manager: PluginManager | None = None) -> type[CalibrationType] | None:
    """The type whose masters are combined from frames of ``frame_type``, or None (science)."""
    return next((t for t in master_types(manager) if t.frame_type == frame_type), None)


def master_types(manager: PluginManager | None = None) -> list[type[CalibrationType]]:
    """Types whose masters are combined from raw frames, in build order."""
    types = _registered(manager) or BUILTIN_TYPES
    return sorted((t for t in types if t.frame_type is not None), key=lambda t: (t.order, t.name))


__all__ = ["BUILTIN_TYPES", "BadPixelMask", "Bias", "Dark", "Flat", "calibration_type", "card_tag",
           "find_type", "for_frame_type", "master_types"]

"""What the plugins contributed: steps, instruments and calibration types by name, the plugin
that owns each, and the checks a contribution must pass to be kept.

Kept apart from the loading (ccdflow.framework.engine.plugins) so that the rules for a valid
contribution read in one place, without pluggy around them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ccdflow.framework.engine.caltype import CalibrationType, validate_calibration_type
from ccdflow.framework.engine.errors import ConfigError, PluginError, did_you_mean
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.instrument_files import InstrumentOrigin, load_in_order
from ccdflow.framework.engine.step import Step, validate_step_class


@dataclass
class PluginInfo:
    """One loaded plugin and what it contributed."""

    name: str
    distribution: str | None
    version: str | None
    steps: list[str] = field(default_factory=list)
    instruments: list[str] = field(default_factory=list)
    calibration_types: list[str] = field(default_factory=list)


class Registry:
    """Loaded plugins and their contributions by name; a failed plugin is forgotten whole."""

    def __init__(self) -> None:
        self.plugins: dict[str, PluginInfo] = {}
        self.steps: dict[str, type[Step]] = {}
        self.instruments: dict[str, Instrument] = {}
        self.calibration_types: dict[str, type[CalibrationType]] = {}
        #: where each instrument came from (a package, the user's folder, the command line)
        self.origins: dict[str, InstrumentOrigin] = {}
        self._owner: dict[str, str] = {}

    def _forget(self, name: str) -> None:
        """Drop plugin ``name`` and everything it contributed (its names are free again)."""
        info = self.plugins.pop(name, None)
        if info is None:
            return
        for step in info.steps:
            self.steps.pop(step, None)
        for inst in info.instruments:
            self.instruments.pop(inst, None)
            self.origins.pop(inst, None)
        for kind in info.calibration_types:
            self.calibration_types.pop(kind, None)
        self._owner = {key: owner for key, owner in self._owner.items() if owner != name}

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

    def _add_instrument(self, instrument: Instrument | Path, info: PluginInfo) -> None:
        if isinstance(instrument, Path):  # a YAML file, which may extend what is registered
            (_, instrument, _), = load_in_order([instrument], self.instruments)
        if not isinstance(instrument, Instrument):
            raise PluginError(
                f"register_instruments expects an Instrument or the Path of an instrument YAML, "
                f"got {type(instrument).__name__}"
            )
        if instrument.name in self.instruments:
            owner = self._owner["instrument:" + instrument.name]
            raise PluginError(f"instrument {instrument.name!r} is already registered by {owner!r}")
        self.instruments[instrument.name] = instrument
        self.origins[instrument.name] = InstrumentOrigin()
        self._owner["instrument:" + instrument.name] = info.name
        info.instruments.append(instrument.name)

    def add_file_instrument(self, instrument: Instrument, origin: InstrumentOrigin) -> None:
        """Register an instrument read from a YAML file (the user's folder, the command line).
        Unlike a plugin's, it replaces a registered instrument of the same name: a site's own
        description of a camera (its caldb rules, its sections) wins over the package's."""
        previous = self._owner.get("instrument:" + instrument.name)
        if previous is not None:
            info = self.plugins.get(previous)
            if info is not None and instrument.name in info.instruments:
                info.instruments.remove(instrument.name)
        self.instruments[instrument.name] = instrument
        self.origins[instrument.name] = origin
        self._owner["instrument:" + instrument.name] = origin.path or instrument.name

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
                              f"{', '.join(sorted(self.calibration_types))}"
                              f"{did_you_mean(name, self.calibration_types)}") from None

    def step(self, name: str) -> type[Step]:
        try:
            return self.steps[name]
        except KeyError:
            raise ConfigError(
                f"unknown step {name!r}; registered steps: {', '.join(sorted(self.steps))}"
                f"{did_you_mean(name, self.steps)}"
            ) from None

    def instrument(self, name: str) -> Instrument:
        try:
            return self.instruments[name]
        except KeyError:
            raise ConfigError(
                f"unknown instrument {name!r}; registered: {', '.join(sorted(self.instruments))}"
                f"{did_you_mean(name, self.instruments)}"
            ) from None

    def owner(self, kind: str, name: str) -> str:
        return self._owner[f"{kind}:{name}"]

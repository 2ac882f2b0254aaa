"""Layered configuration: step default < instrument plugin < instrument file < site/night file
< command line. Every merged value remembers the layer it came from."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from ccdflow.framework.engine.calibration_policy import check_policy
from ccdflow.framework.engine.config_errors import describe_validation
from ccdflow.framework.engine.errors import ConfigError, did_you_mean
from ccdflow.framework.engine.frame_qa_limits import FrameQaLimits, with_frame_qa
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.framework.engine.master_options import MasterOptions, layered_master_settings
from ccdflow.framework.engine.step import Step, StepParams

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager

LAYERS = ("step default", "instrument plugin", "instrument file", "site/night file", "command line")


class SiteConfig(BaseModel):
    """A site or night file: which instrument, and step parameters."""

    model_config = ConfigDict(extra="forbid")

    instrument: str | None = Field(None, description="Instrument name for this site or night.")
    steps: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="Step name -> parameter overrides."
    )
    masters: dict[str, MasterOptions] = Field(
        default_factory=dict, description="Calibration type -> how masters are built this night "
        "(over the instrument's ``masters:``; e.g. {dark: {method: median}}).")
    frame_qa: FrameQaLimits | None = Field(
        None, description="Frame QA limits for this night, value by value over the instrument's "
        "``frame_qa:`` (e.g. {fwhm_max: 6.0}).")


#: libyaml's safe loader where PyYAML was built with it: the built-in instruments' YAML is read
#: on every command, 0.1 s in the pure-Python loader (a tenth of `ccdflow master`'s start-up)
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_yaml(path: str | Path) -> dict[str, Any]:
    """Read a YAML mapping, turning every failure into a ConfigError naming the file."""
    path = Path(path)
    try:
        data = yaml.load(path.read_text(), Loader=_SAFE_LOADER)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML: {exc}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    return data


def parse_cli_params(items: Iterable[str]) -> dict[str, dict[str, Any]]:
    """``step.param=value`` strings to a steps mapping; values are parsed as YAML scalars."""
    steps: dict[str, dict[str, Any]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        step, dot, param = key.strip().partition(".")
        if not sep or not dot or not step or not param:
            raise ConfigError(f"command line: -p {item!r}: expected step.param=value")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        steps.setdefault(step, {})[param] = value
    return steps


#: Mappings whose order means something (a header map's ``values`` and ``frame_type_paths``:
#: patterns tried in order, the first match wins): when merged, ``update``'s entries come
#: first, so an instrument that ``extends`` another has its own patterns tried before the
#: parent's general ones.
ORDERED_MAPPINGS = frozenset({"values", "frame_type_paths"})
#: Mappings that are one value (a dark ``temperature_law``: a law and that law's parameter):
#: ``update``'s replaces ``base``'s whole, so an ``extends: generic`` file giving a doubling law
#: does not inherit the Arrhenius band gap, which the law would refuse as a second parameter.
WHOLE_MAPPINGS = frozenset({"temperature_law"})


def deep_merge(base: Mapping[str, Any], update: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge; lists and scalars in ``update`` replace those in ``base``, and so do
    :data:`WHOLE_MAPPINGS`; in an ordered mapping (:data:`ORDERED_MAPPINGS`) ``update``'s keys
    come first."""
    out = dict(base)
    for key, value in update.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping) and (
                key not in WHOLE_MAPPINGS):
            merged = deep_merge(out[key], value)
            if key in ORDERED_MAPPINGS:
                merged = {**{k: merged[k] for k in value}, **merged}
            out[key] = merged
        else:
            out[key] = value
    return out


@dataclass
class Setting:
    """One merged parameter value and the layer that set it."""

    value: Any
    layer: str
    source: str


@dataclass
class ResolvedConfig:
    """The merged configuration of one run."""

    instrument: Instrument
    instrument_source: str
    steps: dict[str, dict[str, Setting]] = field(default_factory=dict)
    step_classes: dict[str, type[Step]] = field(default_factory=dict)
    #: Per calibration type, how its masters are combined and where each value came from (the
    #: type's default, the instrument's ``masters:``, a night file's): for ``config show``.
    masters: dict[str, dict[str, Setting]] = field(default_factory=dict)

    def params(self, step: str, recipe_params: Mapping[str, Any] | None = None) -> StepParams:
        """Validated parameters for a step; recipe entry values sit in the instrument layer."""
        values = {k: s.value for k, s in self.steps.get(step, {}).items()}
        for key, value in (recipe_params or {}).items():
            setting = self.steps.get(step, {}).get(key)
            if setting is None or LAYERS.index(setting.layer) <= LAYERS.index("instrument plugin"):
                values[key] = value
        try:
            return self.step_classes[step].Params.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_validation("recipe", f"steps.{step}", exc,
                                                  self.step_classes[step].Params)) from None

    def as_dict(self) -> dict[str, Any]:
        """Plain data (for config.yaml beside the outputs and for hashing)."""
        return {
            "instrument": self.instrument.model_dump(mode="json"),
            "steps": {s: {k: v.value for k, v in p.items()} for s, p in sorted(self.steps.items())},
        }

    def config_hash(self) -> str:
        text = json.dumps(self.as_dict(), sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def recipe_hash(self, frame_type: str) -> str:
        """Hash of what shapes one frame type's output: the instrument (without the recipes of
        other frame types and without the caldb match rules, whose effect is the choice of
        calibrations, identified by their checksums elsewhere) and the parameters of the steps
        in this recipe. A flat parameter therefore never changes a bias's hash. The recipe is the
        one that runs: the instrument's, else the calibration type's default."""
        instrument = self.instrument.model_dump(mode="json")
        del instrument["recipes"]
        recipe = [e.model_dump(mode="json") for e in self.instrument.recipe_for(frame_type) or []]
        instrument.pop("caldb", None)
        instrument.pop("masters", None)  # how masters are combined: in each master's identity
        instrument.pop("frame_qa", None)  # judges the product's figures, never changes them
        names = {entry["step"] for entry in recipe}
        instrument["steps"] = {k: v for k, v in instrument.get("steps", {}).items() if k in names}
        data = {"instrument": instrument, "frame_type": frame_type, "recipe": recipe,
                "steps": {s: {k: v.value for k, v in p.items()}
                          for s, p in sorted(self.steps.items()) if s in names}}
        text = json.dumps(data, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def resolve(
    *,
    steps: Mapping[str, type[Step]],
    instrument: Instrument,
    instrument_source: str,
    plugin_layer: tuple[str, Mapping[str, Any]],
    instrument_file: tuple[str, Mapping[str, Any]] | None = None,
    site_files: Iterable[tuple[str, Mapping[str, Any]]] = (),
    cli_params: Mapping[str, Mapping[str, Any]] | None = None,
) -> ResolvedConfig:
    """Merge every layer, validating each against the step Params models as it goes."""
    resolved = ResolvedConfig(instrument, instrument_source, step_classes=dict(steps))
    for name, cls in steps.items():
        resolved.steps[name] = {
            key: Setting(f.get_default(call_default_factory=True), "step default", cls.__module__)
            for key, f in cls.Params.model_fields.items()
        }
    layers: list[tuple[str, str, Mapping[str, Any]]] = [("instrument plugin", *plugin_layer)]
    if instrument_file is not None:
        layers.append(("instrument file", instrument_file[0], instrument_file[1]))
    layers += [("site/night file", src, data) for src, data in site_files]
    if cli_params:
        layers.append(("command line", "-p", cli_params))
    for layer, source, step_values in layers:
        _apply(resolved, steps, layer, source, step_values)
    return resolved


def _apply(
    resolved: ResolvedConfig, steps: Mapping[str, type[Step]], layer: str, source: str,
    step_values: Mapping[str, Any],
) -> None:
    for step, values in step_values.items():
        if step not in steps:
            raise ConfigError(
                f"{source}: steps.{step}: unknown step; registered steps: {', '.join(sorted(steps))}"
                f"{did_you_mean(step, steps)}"
            )
        if not isinstance(values, Mapping):
            raise ConfigError(f"{source}: steps.{step}: expected a mapping of parameters, got {values!r}")
        try:
            steps[step].Params.model_validate(values)
        except ValidationError as exc:
            raise ConfigError(describe_validation(source, f"steps.{step}", exc, steps[step].Params)) from None
        for key, value in values.items():
            resolved.steps[step][key] = Setting(value, layer, source)


def with_master_options(inst: Instrument, layers: Iterable[Mapping[str, MasterOptions]]) -> Instrument:
    """``inst`` with each night file's ``masters:`` values laid over its own, value by value (a
    night that sets only a dark's method keeps the instrument's dark fallback)."""
    merged = {kind: opts.model_dump(exclude_none=True) for kind, opts in inst.masters.items()}
    for layer in layers:
        for kind, opts in layer.items():
            merged[kind] = {**merged.get(kind, {}), **opts.model_dump(exclude_none=True)}
    if merged == {kind: opts.model_dump(exclude_none=True) for kind, opts in inst.masters.items()}:
        return inst
    return inst.model_copy(update={"masters": {k: MasterOptions(**v) for k, v in merged.items()}})


def build(
    manager: PluginManager,
    *,
    instrument: str | None = None,
    config_files: Iterable[str | Path] = (),
    params: Iterable[str] = (),
) -> ResolvedConfig:
    """Resolve a run's configuration from the plugin manager (whose instruments include those
    of the user's instrument files: see :func:`~ccdflow.framework.engine.instrument_files.
    manager_with_files`) and the user's site files and flags.

    The instrument is ``instrument``, else the site files' ``instrument:``, else the one given
    by ``--instrument-config`` (when exactly one file was), else ``generic``. An instrument read
    from a file contributes two layers: the steps of the instrument it extends, then its own."""
    from ccdflow.framework.engine.instrument_files import default_instrument

    site_files = []
    for path in config_files:
        data = load_yaml(path)
        try:
            site = SiteConfig.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(describe_validation(str(path), "", exc, SiteConfig)) from None
        site_files.append((str(path), site))
    name = instrument
    for _, site in site_files:
        name = name or site.instrument
    inst = manager.instrument(name or default_instrument(manager))
    origin = manager.origins.get(inst.name)
    file_layer = None
    if origin is not None and origin.path is not None:
        file_layer = (origin.path, origin.own_steps)
        plugin_layer = (origin.base_source or origin.path, origin.base_steps)
        inst_source = origin.path
    else:
        inst_source = manager.owner("instrument", inst.name)
        plugin_layer = (inst_source, inst.steps)
    check_policy(inst, manager.calibration_types, inst_source)
    for source, masters in [(inst_source, inst.masters), *((p, site.masters) for p, site in site_files)]:
        unknown = sorted(set(masters) - set(manager.calibration_types))
        if unknown:  # a typo (``darks:``) would otherwise leave the defaults in force, silently
            raise ConfigError(f"{source}: masters: unknown calibration type "
                              f"{', '.join(map(repr, unknown))}; registered: "
                              f"{', '.join(sorted(manager.calibration_types))}"
                              f"{did_you_mean(unknown, manager.calibration_types)}")
    master_layers = [("instrument file" if file_layer else "instrument plugin", inst_source, inst.masters),
                     *(("site/night file", p, site.masters) for p, site in site_files)]
    inst = with_master_options(inst, [site.masters for _, site in site_files])
    inst = with_frame_qa(inst, [site.frame_qa for _, site in site_files])
    resolved = resolve(
        steps=manager.steps,
        instrument=inst,
        instrument_source=inst_source,
        plugin_layer=plugin_layer,
        instrument_file=file_layer,
        site_files=[(src, site.steps) for src, site in site_files],
        cli_params=parse_cli_params(params),
    )
    resolved.masters = layered_master_settings(manager.calibration_types, master_layers)
    return resolved

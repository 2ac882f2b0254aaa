"""Run an instrument's recipe (ordered steps) on one frame, with skip and status handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from astropy.nddata import CCDData

from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.errors import ConfigError, NoWorkError
from ccdflow.framework.engine.step import StepContext, header_of, mark_skipped, missing_calibrations

if TYPE_CHECKING:
    from ccdflow.framework.engine.plugins import PluginManager


def recipe_steps(config: ResolvedConfig, frame_type: str) -> list[tuple[str, Any]]:
    """(step name, validated params) for a frame type, in recipe order: the instrument's recipe,
    else the default recipe of the calibration type made from that frame type."""
    recipe = config.instrument.recipe_for(frame_type)
    if recipe is None:
        raise ConfigError(
            f"instrument {config.instrument.name!r} has no recipe for {frame_type!r} frames, and "
            f"no registered calibration type is made from them; recipes exist for: "
            f"{', '.join(sorted(config.instrument.recipes))}"
        )
    return [(entry.step, config.params(entry.step, entry.params)) for entry in recipe]


def needed_calibrations(config: ResolvedConfig, frame_type: str) -> list[str]:
    """Calibration types the recipe will ask for, required and optional (skipped steps need nothing)."""
    out: list[str] = []
    for name, params in recipe_steps(config, frame_type):
        if not params.skip:
            step = config.step_classes[name]
            out += [c for c in (*step.calibrations, *step.optional_calibrations) if c not in out]
    return out


def optional_calibrations(config: ResolvedConfig, frame_type: str) -> set[str]:
    """Calibration types the recipe can do without: no step that runs requires them."""
    required: set[str] = set()
    for name, params in recipe_steps(config, frame_type):
        if not params.skip:
            required.update(config.step_classes[name].calibrations)
    return set(needed_calibrations(config, frame_type)) - required


def run_recipe(
    manager: PluginManager,
    ccd: CCDData,
    config: ResolvedConfig,
    context: StepContext,
    calibrations: Mapping[str, CCDData | None],
) -> CCDData:
    """Apply every step of the frame type's recipe; the framework owns skip and status."""
    ccd.header = header_of(ccd)
    for name, params in recipe_steps(config, context.meta.frame_type):
        step_cls = manager.step(name)
        if params.skip:
            ccd = mark_skipped(ccd, step_cls, "skip requested in config", context)
            continue
        if ccd.header.get(step_cls.status_keyword()) == "DONE":
            ccd = mark_skipped(ccd, step_cls, "already applied to this frame", context)
            continue
        missing_calibrations(step_cls, calibrations, context)
        try:
            ccd = manager.run_step(step_cls(), ccd, params, calibrations, context)
        except NoWorkError as exc:
            ccd = mark_skipped(ccd, step_cls, str(exc), context)
    return ccd

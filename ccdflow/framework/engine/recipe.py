"""Run an instrument's recipe (ordered steps) on one frame, with skip and status handling."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from astropy.nddata import CCDData

from ccdflow.framework.engine.calibration_policy import (
    CalibrationNeeds,
    needs_of,
    skip_reason,
    stamp_absent,
)
from ccdflow.framework.engine.config import ResolvedConfig
from ccdflow.framework.engine.errors import ConfigError, NoWorkError
from ccdflow.framework.engine.step import StepContext, header_of, mark_skipped

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


def calibration_needs(config: ResolvedConfig, frame_type: str) -> CalibrationNeeds:
    """The calibrations a frame type's recipe looks for (required, optional) and the ones the
    camera takes none of, under the instrument's ``calibrations:`` policy (skipped steps need
    nothing)."""
    steps = [config.step_classes[name] for name, params in recipe_steps(config, frame_type)
             if not params.skip]
    return needs_of(steps, config.instrument)


def needed_calibrations(config: ResolvedConfig, frame_type: str) -> list[str]:
    """Calibration types the recipe will ask for, required and optional (not the ones the camera
    takes none of)."""
    return list(calibration_needs(config, frame_type).wanted)


def run_recipe(
    manager: PluginManager,
    ccd: CCDData,
    config: ResolvedConfig,
    context: StepContext,
    calibrations: Mapping[str, CCDData | None],
) -> CCDData:
    """Apply every step of the frame type's recipe; the framework owns skip and status.

    A step whose calibration is absent for a reason (not taken by the camera, optional and none
    matched: ``context.absent``, else the instrument's policy) is SKIPPED with that reason, and
    each absent calibration gets its ``CF_<tag>N`` card."""
    ccd.header = header_of(ccd)
    needs = calibration_needs(config, context.meta.frame_type)
    # a required one absent for a recorded reason too: the Python API's "none given, no caldb"
    absent = {**needs.not_taken, **{k: v for k, v in context.absent.items()
                                    if k in needs.wanted and calibrations.get(k) is None}}
    for name, params in recipe_steps(config, context.meta.frame_type):
        step_cls = manager.step(name)
        if params.skip:
            ccd = mark_skipped(ccd, step_cls, "skip requested in config", context)
            continue
        if ccd.header.get(step_cls.status_keyword()) == "DONE":
            ccd = mark_skipped(ccd, step_cls, "already applied to this frame", context)
            continue
        why = skip_reason(step_cls, calibrations, absent, config, context.meta.path,
                          context.meta.frame_type)
        if why is not None:
            ccd = mark_skipped(ccd, step_cls, why, context)
            continue
        try:
            ccd = manager.run_step(step_cls(), ccd, params, calibrations, context)
        except NoWorkError as exc:
            # the traceback holds this frame and the step's, whose frames hold whole images; the
            # hook machinery's frames refer back to the exception, a cycle only the garbage
            # collector frees: a master's 20 inputs kept ~200 MiB alive (issue 16)
            exc.__traceback__ = None
            also = [f"{k}: {absent[k]}" for k in step_cls.optional_calibrations if k in absent]
            ccd = mark_skipped(ccd, step_cls, "; ".join([str(exc), *also]), context)
    stamp_absent(ccd.header, absent)
    return ccd

"""Run one step on one frame the way a recipe runs it, for tests of steps and run_step wrappers.

The step goes through the recipe runner itself (a recipe of that single step), so the test
sees what a night would: parameters merged over the instrument's, the required-calibration
check, every ``run_step`` wrapper, the ``CF_<STEP>`` status keyword, the HISTORY line, the
timing in ``context.timings``, and a ``NoWorkError`` recorded as SKIPPED instead of raised.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from astropy.nddata import CCDData

    from ccdflow.framework.engine.frame import FrameMeta
    from ccdflow.framework.engine.instrument import Instrument
    from ccdflow.framework.engine.plugins import PluginManager
    from ccdflow.framework.engine.step import Step, StepContext, StepParams


def run_step(
    step: str | type[Step],
    ccd: CCDData,
    *,
    params: Mapping[str, Any] | StepParams | None = None,
    calibrations: Mapping[str, CCDData | None] | None = None,
    meta: FrameMeta | None = None,
    instrument: str | Instrument | None = None,
    context: StepContext | None = None,
    manager: PluginManager | None = None,
) -> CCDData:
    """Run ``step`` (a registered name or a Step class) on ``ccd`` and return the result.

    - ``params``: values over the step's defaults and the instrument's ``steps:`` entry (like
      ``-p step.key=value``); a Params object is used as it is.
    - ``meta``: defaults to a science frame of ``ccd``'s shape (:func:`make_meta`).
    - ``instrument``: an Instrument, or a name in the manager; default ``generic``.
    - ``context``: give one to read ``timings``/``statuses`` or preset ``receipts``; it
      replaces ``meta`` and ``instrument``.
    - ``manager``: default the built-ins (plus the step, when a class they lack is given);
      pass :func:`plugin_manager` (``my_plugin``) to run inside your plugin's wrappers.

    ``ccd`` itself is not rebound or re-headed; a step that writes into its input's pixels
    still shows that in ``ccd``, as it would in a night.
    """
    from ccdflow.framework.engine.config import resolve
    from ccdflow.framework.engine.errors import ConfigError
    from ccdflow.framework.engine.instrument import RecipeEntry
    from ccdflow.framework.engine.recipe import run_recipe
    from ccdflow.framework.engine.step import StepContext, StepParams
    from ccdflow.testing.fakes import make_meta
    from ccdflow.testing.manager import builtin_manager, manager_with

    name = step if isinstance(step, str) else step.name
    if manager is None:
        manager = builtin_manager() if isinstance(step, str) else manager_with(step)
        if isinstance(step, str) and name not in manager.steps:
            raise ConfigError(f"unknown step {name!r}; registered steps: {', '.join(sorted(manager.steps))} "
                              "(the built-ins: for a plugin's step pass manager=plugin_manager(your_plugin), "
                              "or pass the Step class)")
    manager.step(name)  # an unknown name fails here, listing the registered steps
    if context is None:
        if instrument is None or isinstance(instrument, str):
            instrument = manager.instrument(instrument or "generic")
        meta = meta or make_meta(shape=ccd.shape, instrument=instrument.name)
        context = StepContext(meta, instrument)
    frame_type = context.meta.frame_type
    # The instrument's own entry for this step (with its recipe parameters) when its recipe
    # for this frame type has one; otherwise the bare step.
    own = [e for e in context.instrument.recipes.get(frame_type, []) if e.step == name]
    entry = own[0] if own else RecipeEntry(step=name)
    single = context.instrument.model_copy(update={"recipes": {frame_type: [entry]}})
    if isinstance(params, StepParams):
        params = params.model_dump()
    config = resolve(
        steps=manager.steps, instrument=single, instrument_source="ccdflow.testing",
        plugin_layer=("instrument " + context.instrument.name, context.instrument.steps),
        cli_params={name: dict(params)} if params else None,
    )
    # a shallow copy: the recipe gives its frame a fresh header, which must not be the caller's
    return run_recipe(manager, copy.copy(ccd), config, context, dict(calibrations or {}))

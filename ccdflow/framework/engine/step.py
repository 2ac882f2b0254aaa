"""The Step contract: a named, pure transformation of a CCDData with validated parameters."""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from astropy.io import fits
from pydantic import BaseModel, ConfigDict, Field

from ccdflow.framework import dq
from ccdflow.framework.engine.errors import NoWorkError, PluginError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.hookspecs import hookimpl
from ccdflow.framework.engine.instrument import Instrument

if TYPE_CHECKING:  # astropy.nddata costs ~0.5 s to import; `--help` must not pay it
    from astropy.nddata import CCDData

log = logging.getLogger("ccdflow.step")


class StepParams(BaseModel):
    """Base of every step's parameters: unknown keys are errors, every field documented."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    skip: bool = Field(False, description="Do not run this step; recorded as SKIPPED.")


@dataclass
class StepContext:
    """What a step may know about the frame besides its pixels.

    ``receipts`` holds, per calibration type the recipe uses, the caldb's summary of why that
    master was chosen (``selected_id``, ``scaling``, ``dt_days``, ``dtemp``, ``cost``,
    ``n_candidates``, ``waiver``): the same summary the product's header records. It is empty
    when no caldb chose the masters (a master's own inputs, masters given as files).

    ``absent`` says, per calibration type the recipe wants but is not given, why (not taken by
    the camera, optional and none matched): the reason the step is SKIPPED with.

    ``owns_pixels`` says the frame's arrays belong to this run alone (read for it, referenced by
    no caller): a step may then write its results into them instead of new arrays, which spares
    a frame-sized allocation (and its page faults) per plane. A step that ignores it is as right.
    """

    meta: FrameMeta
    instrument: Instrument
    receipts: dict[str, dict[str, Any]] = field(default_factory=dict)
    timings: dict[str, float] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)
    owns_pixels: bool = False


P = TypeVar("P", bound=StepParams)


class Step(Generic[P]):
    """Base class: subclasses set ``name``, ``Params``, ``calibrations`` and implement ``run``.

    A step names its parameters' class twice, as ``Step[MyParams]`` (so ``run`` is typed with it)
    and as ``Params = MyParams`` (so the engine can validate them).

    ``calibrations`` are required (missing: an error before the step runs);
    ``optional_calibrations`` are asked for too, but the step copes without them
    (typically by raising NoWorkError, which records it as SKIPPED).
    """

    name: ClassVar[str]
    Params: ClassVar[type[StepParams]] = StepParams
    calibrations: ClassVar[tuple[str, ...]] = ()
    optional_calibrations: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""

    @classmethod
    def status_keyword(cls) -> str:
        """FITS keyword recording whether the step ran; short enough to avoid HIERARCH."""
        return f"CF_{cls.name.upper()[:5]}"

    def run(
        self,
        ccd: CCDData,
        params: P,
        calibrations: Mapping[str, CCDData],
        context: StepContext,
    ) -> CCDData:
        raise NotImplementedError


def validate_step_class(step: Any) -> None:
    """Refuse a registration that cannot honour the contract, naming what is wrong."""
    where = getattr(step, "__qualname__", repr(step))
    if not (isinstance(step, type) and issubclass(step, Step)):
        raise PluginError(f"{where} is not a subclass of ccdflow Step")
    if not isinstance(getattr(step, "name", None), str) or not step.name.isidentifier():
        raise PluginError(f"{where}.name must be an identifier string, got {getattr(step, 'name', None)!r}")
    params: object = step.Params  # a plugin's class attribute: anything until checked
    if not (isinstance(params, type) and issubclass(params, StepParams)):
        raise PluginError(f"{where}.Params must subclass ccdflow StepParams")
    if step.Params.model_config.get("extra") != "forbid":
        raise PluginError(f"{where}.Params must forbid unknown keys (extra='forbid')")
    undocumented = [n for n, f in step.Params.model_fields.items() if not f.description]
    if undocumented:
        raise PluginError(f"{where}.Params fields without a description: {', '.join(undocumented)}")


class StepRunnerPlugin:
    """Built-in implementations of ``run_step``: the call itself and the bookkeeping wrapper."""

    @hookimpl(trylast=True)
    def run_step(self, step: Step, ccd: CCDData, params: StepParams, calibrations, context):
        return step.run(ccd, params, calibrations, context)

    @hookimpl(wrapper=True, specname="run_step")
    def run_step_bookkeeping(self, step: Step, ccd, params, calibrations, context):
        start = time.perf_counter()
        result = yield
        # the DQ bits ride in ``flags`` (CCDData's mask is boolean): carried past steps that
        # only pass the mask on, reconciled with the mask of a step that changed it
        result.flags = dq.after_step(ccd, result)
        elapsed = time.perf_counter() - start
        context.timings[step.name] = elapsed
        context.statuses[step.name] = "DONE"
        result.header[step.status_keyword()] = ("DONE", f"ccdflow step {step.name}")
        # no seconds in the file: the same inputs and parameters give the same bytes, so a
        # rebuilt master is recognised as identical (timings are in the log and the report)
        result.header.add_history(f"ccdflow {step.name}: done")
        log.debug("%s: %s done in %.3f s", context.meta.path, step.name, elapsed)
        return result


def mark_skipped(ccd: CCDData, step: type[Step], reason: str, context: StepContext) -> CCDData:
    """Record a skipped step in the header and the context, leaving the pixels alone."""
    ccd.header[step.status_keyword()] = ("SKIPPED", f"ccdflow step {step.name}")
    ccd.header.add_history(f"ccdflow {step.name}: skipped ({reason})")
    context.statuses[step.name] = "SKIPPED"
    return ccd


__all__ = [
    "NoWorkError", "Step", "StepContext", "StepParams", "StepRunnerPlugin",
    "mark_skipped", "validate_step_class",
]


def header_of(ccd: CCDData) -> fits.Header:
    """A real FITS header copy (CCDData built in memory may carry a plain dict)."""
    header = ccd.header
    return header.copy() if isinstance(header, fits.Header) else fits.Header(dict(header))

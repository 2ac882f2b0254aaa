"""An instrument's ``calibrations:`` policy applied in one place: which calibrations a recipe
looks for, what a missing one means, and the cards and reasons that record it.

A camera may take no darks (an LN2-cooled CCD), or take them only some nights. Its instrument
YAML says so per calibration type::

    calibrations: {dark: none}        # never looked for; the dark step is SKIPPED
    calibrations: {dark: optional}    # used when one matches, else the step is SKIPPED

A type not listed is as its steps declare (``Step.calibrations`` required,
``Step.optional_calibrations`` optional: the BPM). Every path that picks calibrations for a
frame (night and watch through the pipeline's tasks, the ``master`` commands) goes through
:func:`choose`, and the step runner through :func:`skip_reason`, so a camera without darks is
treated the same everywhere: a missing optional calibration skips its step with the reason in
the product's HISTORY and ``CF_<tag>N`` card and in the night report; a missing required one is
an error that names the YAML line that would make it optional.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, TypeVar

from ccdflow.framework.engine.errors import ConfigError, MissingCalibrationError, did_you_mean
from ccdflow.framework.engine.instrument import CalibrationPolicy, Instrument

if TYPE_CHECKING:
    from astropy.io import fits

    from ccdflow.framework.engine.config import ResolvedConfig
    from ccdflow.framework.engine.step import Step

T = TypeVar("T")


@dataclass(frozen=True)
class CalibrationNeeds:
    """What one frame type's recipe asks for, after the instrument's policy: ``required`` and
    ``optional`` types are looked for (in recipe order); ``not_taken`` maps each type the
    camera takes none of to the reason recorded in the product."""

    required: tuple[str, ...] = ()
    optional: tuple[str, ...] = ()
    not_taken: Mapping[str, str] = field(default_factory=dict)

    @property
    def wanted(self) -> tuple[str, ...]:
        """The types to look for, required first."""
        return (*self.required, *self.optional)


def policy_of(instrument: Instrument, kind: str) -> CalibrationPolicy | None:
    """The instrument's word on ``kind``, or None when it leaves it to the steps."""
    return instrument.calibrations.get(kind)


def needs_of(steps: Iterable[type[Step]], instrument: Instrument) -> CalibrationNeeds:
    """The needs of the steps that will run (in recipe order) under ``instrument``'s policy. A
    type one step requires and another only uses when present is required."""
    required: list[str] = []
    optional: list[str] = []
    not_taken: dict[str, str] = {}
    for step in steps:
        for kind in (*step.calibrations, *step.optional_calibrations):
            policy = policy_of(instrument, kind)
            if policy == "none":
                not_taken[kind] = not_taken_reason(instrument, kind)
            elif policy == "required" or (policy is None and kind in step.calibrations):
                required.append(kind)
            else:
                optional.append(kind)
    required = list(dict.fromkeys(required))
    optional = [k for k in dict.fromkeys(optional) if k not in required]
    return CalibrationNeeds(tuple(required), tuple(optional), not_taken)


def not_taken_reason(instrument: Instrument, kind: str) -> str:
    """Why a type the camera takes none of is absent."""
    return f"not taken (instrument {instrument.name}: calibrations: {{{kind}: none}})"


def missing_reason(instrument: Instrument, kind: str, why: str) -> str:
    """Why an optional type is absent: ``why`` is the caldb's (or the caller's) explanation."""
    if policy_of(instrument, kind) == "optional":
        return (f"optional (instrument {instrument.name}: calibrations: {{{kind}: optional}}), "
                f"none used: {why}")
    return f"none used: {why}"


def required_hint(kind: str, config: ResolvedConfig) -> str:
    """The YAML line that would make a missing required ``kind`` optional, and where it goes: the
    instrument's own file, or (for a plugin's instrument) a file of the user's extending it."""
    name, source = config.instrument.name, config.instrument_source
    if source.endswith((".yaml", ".yml")):
        where = f"its instrument file {source}"
    else:
        where = (f"the YAML of instrument {name!r} (plugin {source}) or to your own instrument "
                 f"file that says `extends: {name}`")
    return (f"if this camera takes no {kind} frames, add `calibrations: {{{kind}: none}}` to {where} "
            f"(`{kind}: optional` uses one only when one matches)")


def choose(needs: CalibrationNeeds, find: Callable[[str], T], config: ResolvedConfig
           ) -> tuple[dict[str, T], dict[str, str]]:
    """``find(kind)`` for every wanted type: the ones found, and why each other type of the
    recipe is absent (not taken, or optional and none found). ``find`` raises
    MissingCalibrationError when it has none; for a required type that error is raised again
    with :func:`required_hint`."""
    chosen: dict[str, T] = {}
    absent = dict(needs.not_taken)
    for kind in needs.wanted:
        try:
            chosen[kind] = find(kind)
        except MissingCalibrationError as exc:
            if kind not in needs.optional:
                exc.hint = required_hint(kind, config)
                raise
            absent[kind] = missing_reason(config.instrument, kind, _without_path(exc))
    return chosen, absent


def skip_reason(step: type[Step], calibrations: Mapping[str, object], absent: Mapping[str, str],
                config: ResolvedConfig, path: str | None, frame_type: str) -> str | None:
    """Why ``step`` does not run (a calibration it requires is absent for a recorded reason, or
    one the policy makes optional or not taken), else None. A required calibration missing
    without such a reason is MissingCalibrationError, with the YAML line that would change it.
    A step's optional calibrations never stop it: it runs without them, as its contract says."""
    reasons = []
    for kind in step.calibrations:
        if calibrations.get(kind) is not None:
            continue
        policy = policy_of(config.instrument, kind)
        reason = absent.get(kind) or (
            not_taken_reason(config.instrument, kind) if policy == "none" else
            missing_reason(config.instrument, kind, "none given") if policy == "optional" else None)
        if reason is None:
            error = MissingCalibrationError(
                f"step {step.name!r} needs calibration {kind} and none was provided for "
                f"{frame_type} frame", path=path)
            error.hint = required_hint(kind, config)
            raise error
        reasons.append(f"no {kind}: {reason}")
    return "; ".join(reasons) or None


def check_policy(instrument: Instrument, known: Collection[str], source: str) -> None:
    """Refuse a ``calibrations:`` key that names no registered calibration type (a typo would
    otherwise leave the calibration required, silently)."""
    unknown = sorted(set(instrument.calibrations) - set(known))
    if unknown:
        raise ConfigError(
            f"{source}: instrument {instrument.name}: calibrations: unknown calibration type "
            f"{', '.join(map(repr, unknown))}; registered: {', '.join(sorted(known))}"
            f"{did_you_mean(unknown, known)}")


def stamp_absent(header: fits.Header, absent: Mapping[str, str]) -> None:
    """``CF_<tag>N`` (``CF_DARKN``): why the frame has no master of that type, in full."""
    from ccdflow.framework.calibrations import card_tag
    from ccdflow.framework.io import cards
    from ccdflow.framework.io.provenance import card_text

    for kind, reason in absent.items():
        cards.calibration_absent(card_tag(kind), kind).put(header, card_text(reason))


def _without_path(exc: MissingCalibrationError) -> str:
    """The error's message on one line, without the file name in front (the frame says it)."""
    text = str(exc)
    if exc.path and text.startswith(f"{exc.path}: "):
        text = text[len(exc.path) + 2:]
    return " ".join(text.split())

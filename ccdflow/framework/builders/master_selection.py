"""Which frames of a mixed set make one master: `ccdflow master dark RAWDIR` picks the dark
frames out of a night's folder, narrowed by the selectors given (filter, exposure time,
temperature), and refuses, naming each group and its count, a selection that would still make
more than one master. Frames are grouped as the night groups them (the setup, what the type
matches exactly, then its numeric fields clustered within its caldb rule's tolerances), but
never by night: a master may be built from several nights' frames."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from statistics import mean
from typing import TYPE_CHECKING

from ccdflow.framework.calibrations import calibration_type
from ccdflow.framework.engine.caltype import SETUP_FIELDS
from ccdflow.framework.engine.errors import ConfigError, UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta

if TYPE_CHECKING:
    from ccdflow.framework.engine.instrument import MatchRule

#: The option that picks one value of a field, for the error's advice.
SELECTORS = {"filter": "--filter NAME", "exposure_time": "--exptime SECONDS",
             "temperature": "--temperature C"}
_UNITS = {"exposure_time": " s", "temperature": " C"}
_WORDS = {"filter": ("filter", "filters"), "exposure_time": ("exposure", "exposure times"),
          "temperature": ("temperature", "temperatures")}


class MixedGroupsError(UnprocessableInputError):
    """The selected frames would make more than one master (two filters of flats, two exposure
    times of darks): the message lists each group with its count and the option that picks one."""


@dataclass
class Selection:
    """The frames of one master and what was left out of the set given, by reason."""

    frames: list[FrameMeta]
    left_out: Counter[str] = field(default_factory=Counter)

    def note(self, kind: str) -> str:
        """One line for stderr: how many frames were used and what was left out."""
        text = f"master {kind}: {len(self.frames)} frame(s) selected"
        if self.left_out:
            text += "; left out " + ", ".join(f"{n} {why}" for why, n in self.left_out.items())
        return text


def value_text(name: str, value: object) -> str:
    """``30 s``, ``-20 C``, ``V``, ``2x2``; unknown values as ``none``."""
    if value is None:
        return "none"
    if isinstance(value, float):
        return f"{value:g}{_UNITS.get(name, '')}"
    if isinstance(value, tuple):
        return "x".join(map(str, value))
    return str(value)


def _counts(name: str, metas: Sequence[FrameMeta]) -> str:
    """``30 s (8), 120 s (8)``: each value there is (in order) and its number of frames."""
    counts = Counter(getattr(m, name) for m in metas)
    ordered = sorted(counts.items(), key=lambda item: (item[0] is None, str(type(item[0])), item[0] or 0))
    return ", ".join(f"{value_text(name, v)} ({n})" for v, n in ordered)


def _near(kind: str, name: str, want: float, rule: MatchRule) -> tuple[float, str]:
    """The tolerance a frame's ``name`` may differ from ``want`` by: the one the night groups
    masters with (the largest gap inside one master, from the type's caldb rule)."""
    limits = calibration_type(kind).group_tolerance(name, want, rule)
    if limits is None:
        raise ConfigError(f"master {kind}: the {kind} match rule has no {name} tolerance "
                          f"(caldb: {kind}: temperature_tolerance), so {SELECTORS[name]} cannot select")
    return limits[0], f"{value_text(name, float(want))} +-{limits[0]:g}{_UNITS[name]}"


def select_frames(kind: str, metas: Sequence[FrameMeta], rule: MatchRule, *,
                  filter: str | None = None, exptime: float | None = None,
                  temperature: float | None = None) -> Selection:
    """The frames of ``kind``'s raw type in ``metas`` matching the selectors given; refuses none
    (naming what there is) and a selection of more than one master (:class:`MixedGroupsError`)."""
    frame_type = calibration_type(kind).frame_type
    chosen = [m for m in metas if m.frame_type == frame_type]
    left = Counter(sorted(m.frame_type for m in metas if m.frame_type != frame_type))
    if not chosen:
        raise UnprocessableInputError(f"no {frame_type} frames among the {len(metas)} frames read "
                                      f"({', '.join(f'{n} {t}' for t, n in left.items())})")
    if filter is not None:
        keep = [m for m in chosen if str(m.filter).casefold() == filter.casefold()]
        _narrow(chosen, keep, left, filter, "filter", frame_type)
        chosen = keep
    for name, want in (("exposure_time", exptime), ("temperature", temperature)):
        if want is not None:
            tol, words = _near(kind, name, want, rule)
            keep = [m for m in chosen if getattr(m, name) is not None and abs(getattr(m, name) - want) <= tol]
            _narrow(chosen, keep, left, words, name, frame_type)
            chosen = keep
    groups = master_groups(kind, chosen, rule)
    if len(groups) > 1:
        raise MixedGroupsError(mixed_message(kind, frame_type, groups))
    return Selection(chosen, left)


def _narrow(before: list[FrameMeta], after: list[FrameMeta], left: Counter[str], words: str,
            name: str, frame_type: str | None) -> None:
    """Count what a selector left out; none left is an error listing the values there are."""
    one, many = _WORDS[name]
    if not after:
        raise UnprocessableInputError(f"no {frame_type} frames of {one} {words}; the {frame_type} "
                                      f"frames' {many}: {_counts(name, before)}")
    if len(after) < len(before):
        left[f"{frame_type} of another {one} than {words}"] += len(before) - len(after)


def master_groups(kind: str, metas: Sequence[FrameMeta], rule: MatchRule) -> list[list[FrameMeta]]:
    """``metas`` (all of ``kind``'s raw type) grouped into the masters the night would make of
    them, leaving the night out of the key."""
    caltype = calibration_type(kind)
    keyed: dict[tuple, list[FrameMeta]] = {}
    for meta in metas:
        # the type's own key (a plugin type may override it), as the night's group_key has it
        key = (*(getattr(meta, f) for f in SETUP_FIELDS), *caltype.group_key(meta, rule))
        keyed.setdefault(key, []).append(meta)
    return [part for group in keyed.values() for part in caltype.split_group(group, rule)]


def mixed_message(kind: str, frame_type: str | None, groups: list[list[FrameMeta]]) -> str:
    """``the 16 dark frames make 4 masters: 30 s, -20 C (4); ...; pick one with --exptime
    SECONDS and --temperature C``: only the fields that tell the groups apart."""
    caltype = calibration_type(kind)
    fields = [f for f in (*SETUP_FIELDS, *caltype.also_match, *caltype.numeric_group)
              if len({_group_value(f, g) for g in groups}) > 1]
    parts = []
    for group in groups:
        words = ", ".join(_group_value(f, group) if f in _UNITS else f"{f} {_group_value(f, group)}"
                          for f in fields)
        parts.append(f"{words} ({len(group)})")
    options = [SELECTORS[f] for f in fields if f in SELECTORS]
    others = [f for f in fields if f not in SELECTORS]
    advice = []
    if options:
        advice.append("pick one with " + " and ".join(options))
    if others:
        advice.append(f"give the files of one {'/'.join(others)}")
    n = sum(len(g) for g in groups)
    return (f"the {n} {frame_type} frames make {len(groups)} masters: {'; '.join(parts)}; "
            f"{', or '.join(advice)}")


def _group_value(name: str, group: Sequence[FrameMeta]) -> str:
    """A group's value of ``name``: a numeric field's mean (its members differ within the
    tolerance), else the value they share."""
    values = [getattr(m, name) for m in group]
    if name in _UNITS:
        known = [v for v in values if v is not None]
        return value_text(name, round(mean(known), 1) if known else None)
    return value_text(name, values[0])

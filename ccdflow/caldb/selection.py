"""Choosing the best calibration for a frame: hard gates, exposure policy, cost, tie-break.

Pure logic over :class:`CalRecord` values, so it is tested without a database. The cost of a
surviving candidate (time, temperature and, for darks, the noise a scaled master adds) is
defined in :mod:`ccdflow.caldb.cost`. Exact exposure matches are ranked before every
scaled dark whatever their cost; ties go to the later ingested record, then the higher id.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from ccdflow.caldb.cost import cost_terms, rank_key, scales_with_exposure
from ccdflow.framework.calibrations import find_type
from ccdflow.framework.engine.dark_law import temperature_scaling
from ccdflow.framework.engine.errors import MissingCalibrationError
from ccdflow.framework.engine.frame import FrameMeta, binning_text, shape_text
from ccdflow.framework.engine.instrument import MatchRule


@dataclass(frozen=True)
class CalRecord:
    """The columns selection needs, detached from the ORM (cheap to build from rows)."""

    id: int
    type: str
    instrument: str
    detector: str
    binning: str
    readout_mode: str
    raw_shape: str
    filter: str | None
    exposure_time: float | None
    temperature: float | None
    obs_time: datetime
    valid_from: datetime | None
    valid_to: datetime | None
    quality: str
    ingested_at: datetime
    path: str
    quality_reason: str | None = None
    camera: str | None = None
    gain_setting: str | None = None
    offset: str | None = None
    n_combined: int | None = None
    stats: dict[str, Any] | None = field(default=None, hash=False)  # a dict: not hashable


@dataclass
class Candidate:
    """One record as judged for one frame."""

    id: int
    path: str
    accepted: bool
    reasons: list[str] = field(default_factory=list)
    cost: float | None = None
    exact_exposure: bool | None = None
    scale: float | None = None
    dt_days: float | None = None
    dtemp: float | None = None
    temperature_factor: float | None = None
    terms: dict[str, Any] | None = None


@dataclass
class Receipt:
    """Why a calibration was chosen: every candidate, the policy, any scaling or waiver."""

    type: str
    frame: dict[str, Any]
    policy: dict[str, Any]
    candidates: list[Candidate]
    selected_id: int | None = None
    scaling: float | None = None
    waiver: str | None = None
    note: str | None = None
    #: Suspect masters that would have been chosen but for their quality (see qa.py).
    skipped: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def summary(self) -> dict[str, Any]:
        """The short form stored with products and written in headers."""
        chosen = next((c for c in self.candidates if c.id == self.selected_id), None)
        return {
            "type": self.type, "selected_id": self.selected_id, "scaling": self.scaling,
            "dt_days": None if chosen is None else chosen.dt_days,
            "dtemp": None if chosen is None else chosen.dtemp,
            "cost": None if chosen is None else chosen.cost,
            "n_candidates": len(self.candidates), "waiver": self.waiver,
            "temperature_factor": None if chosen is None else chosen.temperature_factor,
            "temperature_law": self.policy.get("temperature_law"),
            "cost_terms": None if chosen is None else chosen.terms,
            **({"skipped": self.skipped} if self.skipped else {}),
        }


class NoCalibrationError(MissingCalibrationError):
    """No candidate passed the gates; the receipt says why for each."""

    def __init__(self, message: str, receipt: Receipt, path: str | None = None) -> None:
        super().__init__(message, path=path)
        self.receipt = receipt


def utc(value: datetime) -> datetime:
    """Naive UTC (as stored) from any datetime."""
    return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value


_FRAME_VALUE = {
    "instrument": lambda m: m.instrument,
    "detector": lambda m: m.detector,
    "binning": lambda m: binning_text(m.binning),
    "readout_mode": lambda m: m.readout_mode,
    "shape": lambda m: shape_text(m.shape),
    "filter": lambda m: m.filter,
    "camera": lambda m: m.camera,
    "gain_setting": lambda m: m.gain_setting,
    "offset": lambda m: m.offset,
}
_RECORD_FIELD = {"shape": "raw_shape"}
#: Gates whose None means "not known" rather than "none": a record made before the caldb
#: recorded them (schema 0004), or from frames whose headers do not say. Equality still decides
#: (None matches only None), and the reason says "unknown" so a reader knows why.
_UNKNOWN_WHEN_NONE = ("camera", "gain_setting", "offset")


def _shown(key: str, value: object) -> object:
    return "unknown" if value is None and key in _UNKNOWN_WHEN_NONE else value


def exposure_matches(frame_exp: float, cal_exp: float | None, rule: MatchRule) -> bool:
    if cal_exp is None:
        return False
    tol = max(rule.exposure_abs_tolerance, rule.exposure_rel_tolerance * max(frame_exp, cal_exp))
    return abs(frame_exp - cal_exp) <= tol


def judge(kind: str, meta: FrameMeta, rec: CalRecord, rule: MatchRule) -> Candidate:
    """Apply every hard gate (all failures are listed, not just the first) and the cost."""
    reasons: list[str] = []
    if rec.type != kind:
        reasons.append(f"type: need {kind}, is {rec.type}")
    for key in rule.must_match:
        if key not in _FRAME_VALUE:
            continue
        want, have = _FRAME_VALUE[key](meta), getattr(rec, _RECORD_FIELD.get(key, key))
        if want != have:
            reasons.append(f"{key}: need {_shown(key, want)}, is {_shown(key, have)}")
    if rec.quality == "bad":
        reasons.append(f"quality: marked bad ({rec.quality_reason or 'no reason given'})")
    elif rec.quality == "suspect":  # the master QA found it unlike the previous one (qa.py)
        reasons.append(f"quality: suspect, not yet accepted ({rec.quality_reason or 'master QA'}); "
                       f"`ccdflow caldb mark-good {rec.id}` accepts it")
    t = utc(meta.date_obs)
    fmt = "%Y-%m-%dT%H:%M"
    if rec.valid_from is not None and t < rec.valid_from:
        reasons.append(f"validity: frame {t:{fmt}} before valid_from {rec.valid_from:{fmt}}")
    if rec.valid_to is not None and t > rec.valid_to:
        reasons.append(f"validity: frame {t:{fmt}} after valid_to {rec.valid_to:{fmt}}")
    dt_days = (t - rec.obs_time).total_seconds() / 86400.0
    if abs(dt_days) > rule.max_age_days:
        reasons.append(f"age: need within {rule.max_age_days:g} d, is {abs(dt_days):.1f} d")
    dtemp = None
    if meta.temperature is not None and rec.temperature is not None:
        dtemp = rec.temperature - meta.temperature
        tol = rule.temperature_tolerance
        if tol is not None and abs(dtemp) > tol:
            reasons.append(
                f"temperature: need {meta.temperature:.1f} +-{tol:g} C, is {rec.temperature:.1f} C"
            )
    exact, scale = None, None
    if scales_with_exposure(kind):
        exact = exposure_matches(meta.exposure_time, rec.exposure_time, rule)
        if not exact:
            if not rule.allow_exposure_scaling:
                reasons.append(
                    f"exposure: need {meta.exposure_time:g} s (scaling not allowed), "
                    f"is {rec.exposure_time} s"
                )
            elif not rec.exposure_time:
                reasons.append("exposure: master dark has no exposure time to scale from")
            else:
                scale = meta.exposure_time / rec.exposure_time
    cand = Candidate(rec.id, rec.path, not reasons, reasons, exact_exposure=exact, scale=scale,
                     dt_days=round(dt_days, 4), dtemp=None if dtemp is None else round(dtemp, 3))
    if exact is not None:  # a pin that waives the gates is still scaled: the receipt says how
        cand.temperature_factor = round(temperature_scaling(
            rule.temperature_law, meta.temperature, rec.temperature).factor, 6)
    if cand.accepted:
        terms = cost_terms(meta, rec, rule, dt_days, dtemp, exact is not None)
        cand.cost, cand.terms = terms.total, terms.to_dict()
    return cand


def describe_setup(meta: FrameMeta) -> list[str]:
    """The camera and CMOS settings of a frame in words (``camera 'ZWO ASI120MC' gain 0``),
    only those the header gave."""
    words = [] if meta.camera is None else [f"camera {meta.camera!r}"]
    if meta.gain_setting is not None:
        words.append(f"gain {meta.gain_setting}")
    if meta.offset is not None:
        words.append(f"offset {meta.offset}")
    return words


def describe_frame(kind: str, meta: FrameMeta) -> str:
    """'flat for generic sim0 1x1 filter V': what a frame needs, in the type's own words."""
    parts = [kind, "for", meta.instrument, *describe_setup(meta), meta.detector,
             binning_text(meta.binning)]
    found = find_type(kind)
    if found is not None:  # a type no plugin knows: the setup says enough
        parts += found.describe(meta)
    return " ".join(parts)


def select(
    kind: str,
    meta: FrameMeta,
    records: list[CalRecord],
    rule: MatchRule,
    *,
    pinned: CalRecord | None = None,
    waive: bool = False,
    excluded: int = 0,
) -> tuple[CalRecord, Receipt]:
    """The best record and its receipt, or :class:`NoCalibrationError` naming what failed.

    ``excluded`` counts records of this type and instrument the caller's query left out
    (outside the age window), so the receipt can say they exist.
    """
    frame = {"path": meta.path, "frame_type": meta.frame_type, "instrument": meta.instrument,
             "camera": meta.camera, "gain_setting": meta.gain_setting, "offset": meta.offset,
             "date_obs": meta.date_obs.isoformat(), "temperature": meta.temperature,
             "exposure_time": meta.exposure_time, "filter": meta.filter}
    policy = rule.model_dump()
    policy["exposure_policy"] = "exact match preferred; nearest exposure scaled" if (
        rule.allow_exposure_scaling) else "exact match only"
    by_id = {r.id: r for r in records}
    if pinned is not None:
        by_id[pinned.id] = pinned
        cand = judge(kind, meta, pinned, rule)
        receipt = Receipt(kind, frame, policy, [cand])
        # Another camera's master is never applied; one of unknown camera (recorded before
        # cameras were told apart) may be, by an explicit waiver.
        unwaivable = [r for r in cand.reasons if r.startswith(("type:", "instrument:"))
                      or (r.startswith("camera:") and pinned.camera is not None)]
        if unwaivable:
            raise NoCalibrationError(
                f"pinned {kind} id {pinned.id} cannot be used for this frame, even with a "
                f"waiver: {'; '.join(unwaivable)}", receipt, meta.path,
            )
        if not cand.accepted and not waive:
            raise NoCalibrationError(
                f"pinned {kind} id {pinned.id} fails the hard gates for this frame: "
                f"{'; '.join(cand.reasons)} (waive explicitly to use it anyway)", receipt, meta.path,
            )
        if not cand.accepted:
            receipt.waiver = "hard gates waived: " + "; ".join(cand.reasons)
        receipt.note = "pinned by override"
        receipt.selected_id, receipt.scaling = pinned.id, cand.scale
        return pinned, receipt
    cands = [judge(kind, meta, r, rule) for r in records]
    receipt = Receipt(kind, frame, policy, cands)
    if excluded:
        receipt.note = f"{excluded} more {kind} records outside the {rule.max_age_days:g} d window"
    good = [c for c in cands if c.accepted]
    if not good:
        raise NoCalibrationError(no_match_message(kind, meta, cands, excluded, rule), receipt,
                                 meta.path)
    best = min(good, key=lambda c: rank_key(c, by_id[c.id]))
    receipt.selected_id, receipt.scaling = best.id, best.scale
    receipts_sorted = sorted(cands, key=lambda c: (not c.accepted, c.cost if c.cost is not None
                                                   else math.inf, -c.id))
    receipt.candidates = receipts_sorted
    return by_id[best.id], receipt


def no_match_message(kind: str, meta: FrameMeta, cands: list[Candidate], excluded: int,
                     rule: MatchRule) -> str:
    """'dark for EFOSC2 ccd40 2x2 at -25.0 C: 3 candidates, all rejected: 2 temperature ...'"""
    total = len(cands) + excluded
    head = describe_frame(kind, meta)
    if total == 0:
        return f"{head}: no {kind} calibrations recorded for instrument {meta.instrument}"
    counts: dict[str, list[str]] = {}
    for c in cands:
        first = c.reasons[0]
        gate = first.split(":", 1)[0]
        counts.setdefault(gate, []).append(first.split(":", 1)[1].strip())
    parts = [f"{len(v)} {gate} ({v[0]})" for gate, v in sorted(counts.items(), key=lambda kv: -len(kv[1]))]
    if excluded:
        parts.append(f"{excluded} older/newer than {rule.max_age_days:g} d")
    return f"{head}: {total} candidates, all rejected: " + ", ".join(parts)


def now_utc() -> datetime:
    return datetime.now(UTC).replace(tzinfo=None)

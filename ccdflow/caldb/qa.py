"""Master QA before use: a new master is compared with the previous good master of its setup.

The previous master is the latest good one (not bad, not suspect) observed before the new one
that passes the same equality gates selection uses (the type's caldb rule: instrument, camera,
detector, binning, readout mode, gain setting, offset, raw shape, and the filter of a flat); for
a dark, one of the same exposure time (the rule's exposure tolerance), the nearest in
temperature (whole degrees, within the type's ``max_temperature_difference``: a dark's rate
follows its temperature), then time. The figures,
over pixels finite and unmasked in both:

- ``outlier_fraction``: the fraction with ``|new - old| > nsigma * combined error`` (see
  :func:`ccdflow.caldb.qa_compare.compare`), the errors from each master's UNCERT plane, or
  its noise statistic where it has none;
- ``smooth_outlier_fraction``: the same over ``smooth`` x ``smooth`` box means (a dust shadow a
  few percent deep);
- ``level_shift``: the clipped mean of ``new - old`` over the combined error of one pixel, a
  change of the whole level in units of one pixel's error (10 ADU on a bias whose pixels are
  known to 1.5 ADU: 6.7);
- ``level_change``: ``level(new) / level(old) - 1`` with ``level`` the clipped mean, e.g. the
  relative change of a dark's rate.

Darks are compared as rates (divided by their exposure times). A figure beyond its limit (the
type's ``qa_limits``, overridden by the instrument's ``caldb: {type: {qa: ...}}``) makes the
master ``suspect``: it is recorded, never chosen, until a person accepts it with ``ccdflow caldb
mark-good ID``. The first master of a setup has nothing to compare with: it is good, and its QA
says so."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from ccdflow.caldb.models import Calibration
from ccdflow.caldb.qa_compare import compare, exceeded, planes
from ccdflow.caldb.selection import _RECORD_FIELD as RECORD_FIELD
from ccdflow.caldb.selection import (
    CalRecord,
    Receipt,
    exposure_matches,
    judge,
    now_utc,
    rank_key,
    scales_with_exposure,
)
from ccdflow.framework.calibrations import find_type
from ccdflow.framework.engine.errors import ConfigError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import MatchRule
from ccdflow.framework.engine.master_qa import DEFAULT_LIMITS

if TYPE_CHECKING:
    from ccdflow.caldb.database import CalDB
    from ccdflow.framework.engine.plugins import PluginManager

#: Who a suspect verdict is recorded as (quality_by).
QA_ACTOR = "ccdflow master QA"
#: How many earlier masters of the setup are considered as the one to compare with.
_LOOKBACK = 200


def limits_for(kind: str, rule: MatchRule) -> dict[str, Any]:
    """The type's QA limits with the rule's overrides; a type no plugin knows gets the defaults."""
    found = find_type(kind)
    return rule.qa.limits(found.qa_limits if found is not None else DEFAULT_LIMITS)


def rule_for_master(manager: PluginManager, instrument: str, kind: str) -> MatchRule:
    """The instrument's rule for the type, else the type's default (a master of an instrument no
    plugin describes is still compared, with the type's own gates)."""
    from ccdflow.caldb.rules import DEFAULT_RULE, rule_for

    try:
        return rule_for(manager, instrument, kind)
    except ConfigError:
        found = find_type(kind)
        return found.default_rule() if found is not None else DEFAULT_RULE.model_copy(deep=True)


def previous_good(db: CalDB, fields: Mapping[str, Any], rule: MatchRule,
                  limits: Mapping[str, Any]) -> list[Calibration]:
    """Good masters of the same setup observed before ``fields``, the one to compare with first."""
    c = Calibration
    where = [c.type == fields["type"], c.instrument == fields["instrument"], c.quality == "good",
             c.obs_time <= fields["obs_time"], c.sha256 != fields["sha256"]]
    for key in rule.must_match:
        column = getattr(c, RECORD_FIELD.get(key, key), None)
        if column is None or key == "instrument":
            continue
        value = fields.get(RECORD_FIELD.get(key, key))
        where.append(column.is_(None) if value is None else column == value)
    with db.sessions.read() as session:
        found = list(session.scalars(select(c).where(*where).order_by(c.obs_time.desc(), c.id.desc())
                                     .limit(_LOOKBACK)))
        session.expunge_all()
    temp = fields.get("temperature")
    tol = limits.get("max_temperature_difference") or rule.temperature_tolerance
    if temp is not None and tol is not None:
        found = [r for r in found if r.temperature is None or abs(r.temperature - temp) <= tol]
    if scales_with_exposure(fields["type"]):
        # only a dark of the same exposure: a short dark's rate carries the bias residual and
        # readout glow over a few seconds, so the darks of one night (5, 15, 30, 60, 120 s of a
        # real Apogee camera) differ as rates without anything being wrong
        exposure = fields.get("exposure_time") or 0.0
        found = [r for r in found if exposure_matches(exposure, r.exposure_time, rule)]

        def nearest(r: Calibration) -> float:
            return round(abs(r.temperature - temp)) if r.temperature is not None and temp is not None else 0.0
        found.sort(key=nearest)  # whole degrees, stable: a set point's jitter does not beat recency
    return found


def review(db: CalDB, fields: dict[str, Any], rule: MatchRule) -> dict[str, Any]:
    """The QA of a master about to be ingested: ``fields`` gets its quality and ``qa`` columns."""
    kind = fields["type"]
    limits = limits_for(kind, rule)
    qa: dict[str, Any] = {"verdict": "good", "compared_id": None, "limits": limits}
    if not limits["enabled"]:
        qa.update(verdict="not compared", note=f"QA is off for {kind} masters")
        fields["qa"] = qa
        return qa
    per_second = fields.get("exposure_time") if scales_with_exposure(kind) else None
    previous = previous_good(db, fields, rule, limits)
    new = planes(fields["path"], (fields.get("stats") or {}).get("noise"), per_second)
    notes = []
    for old in previous:
        try:
            old_planes = planes(old.path, (old.stats or {}).get("noise"),
                             old.exposure_time if per_second else None)
        except (OSError, ValueError, IndexError, KeyError) as exc:
            notes.append(f"{kind} {old.id} unreadable ({type(exc).__name__}: {exc})")
            continue
        if old_planes[0].shape != new[0].shape:
            notes.append(f"{kind} {old.id} has shape {old_planes[0].shape}, this one {new[0].shape}")
            continue
        figures = compare(new, old_planes, limits)
        if not figures.get("pixel_error"):
            notes.append(f"{kind} {old.id}: no error to compare within (no UNCERT plane, no noise "
                         "and no scatter in either master)")
            continue
        figures["dt_days"] = round((fields["obs_time"] - old.obs_time).total_seconds() / 86400, 4)
        if fields.get("temperature") is not None and old.temperature is not None:
            figures["dtemp"] = round(fields["temperature"] - old.temperature, 3)
        if per_second:
            figures["exposure_ratio"] = round(per_second / old.exposure_time, 6)
        over = exceeded(figures, limits)
        qa.update(compared_id=old.id, compared_path=old.path, figures=figures, exceeded=over)
        if over:
            qa["verdict"] = "suspect"
            fields.update(quality="suspect", quality_by=QA_ACTOR, quality_at=now_utc(),
                          quality_reason=f"master QA against {kind} {old.id}: " + "; ".join(over))
        break
    else:
        if previous:  # earlier masters exist, none could be compared: say so, not "first"
            qa["verdict"] = "not compared"
        else:
            qa["verdict"] = "first of its setup"
            what = "setup and exposure" if scales_with_exposure(kind) else "setup"
            notes.insert(0, f"no earlier good {kind} master of this {what} to compare with")
    if notes:
        qa["note"] = "; ".join(notes)
    fields["qa"] = qa
    return qa


def note_skipped_suspects(kind: str, meta: FrameMeta, records: list[CalRecord], rule: MatchRule,
                          receipt: Receipt) -> None:
    """Say in ``receipt`` which suspect masters the frame would have used but for their quality:
    those passing every other gate and ranking before the one chosen (or any, when none was)."""
    by_id = {r.id: r for r in records}
    chosen = next((c for c in receipt.candidates if c.id == receipt.selected_id), None)
    best = None if chosen is None or chosen.id not in by_id else rank_key(chosen, by_id[chosen.id])
    for rec in records:
        if rec.quality != "suspect":
            continue
        cand = judge(kind, meta, replace_quality(rec), rule)
        if cand.accepted and (best is None or rank_key(cand, rec) < best):
            receipt.skipped.append(f"{kind} {rec.id} skipped as suspect ({rec.quality_reason})")


def replace_quality(rec: CalRecord) -> CalRecord:
    return dataclasses.replace(rec, quality="good", quality_reason=None)


def qa_words(qa: dict[str, Any] | None) -> str:
    """The master QA in one line: 'suspect against bias 3: outlier_fraction 0.04 (limit 0.002)',
    'good against bias 3 (outliers 0.0001, level shift +0.02 sigma)', 'first of its setup'."""
    if not qa:
        return "no QA (ingested before schema 0005 or by a bulk loader)"
    verdict, figures = qa.get("verdict", "?"), qa.get("figures") or {}
    if qa.get("compared_id") is None:
        return f"{verdict}: {qa.get('note') or 'nothing compared'}"
    words = f"{verdict} against {qa.get('compared_id')}"
    if qa.get("exceeded"):
        return f"{words}: " + "; ".join(qa["exceeded"])
    parts = [f"outliers {figures.get('outlier_fraction', 0):.4g}",
             f"level shift {figures.get('level_shift', 0):+.3g} sigma"]
    if figures.get("level_change") is not None:
        parts.append(f"level change {figures['level_change']:+.3g}")
    return f"{words} ({', '.join(parts)})"

"""Master QA before use: a new master is compared with the previous good master of its setup.

The previous master is the latest good one (not bad, not suspect) observed before the new one
that passes the same equality gates selection uses (the type's caldb rule: instrument, camera,
detector, binning, readout mode, gain setting, offset, raw shape, and the filter of a flat); for
a dark, the nearest in exposure time, then temperature (whole degrees, within the type's
``max_temperature_difference``: a dark's rate follows its temperature), then time. The figures,
over pixels finite and unmasked in both:

- ``outlier_fraction``: the fraction with ``|new - old| > nsigma * combined error`` (see
  :func:`compare`), the errors from each master's UNCERT plane, or its noise statistic where it
  has none;
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
import math
import warnings
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.io import fits
from astropy.stats import sigma_clipped_stats
from astropy.utils.exceptions import AstropyWarning
from scipy.ndimage import uniform_filter
from sqlalchemy import select

from ccdflow.caldb.models import Calibration
from ccdflow.caldb.selection import _RECORD_FIELD as RECORD_FIELD
from ccdflow.caldb.selection import CalRecord, Receipt, judge, now_utc, rank_key, scales_with_exposure
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


def _planes(path: str, noise: float | None, per_second: float | None
            ) -> tuple[np.ndarray, np.ndarray, np.ndarray, str]:
    """(values, errors, usable, where the errors came from) of a master file."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", AstropyWarning)
        with fits.open(path, memmap=False) as hdul:
            images = [h for h in hdul if getattr(h.data, "ndim", 0) == 2]
            sci = hdul["SCI"] if "SCI" in hdul else images[0]
            data = np.asarray(sci.data, np.float64)
            uncert = np.asarray(hdul["UNCERT"].data, np.float64) if "UNCERT" in hdul else None
            mask = np.asarray(hdul["MASK"].data) != 0 if "MASK" in hdul else np.zeros(data.shape, bool)
    if uncert is not None:
        error, source = uncert, "UNCERT"
    elif noise is not None and noise > 0:
        error, source = np.full(data.shape, float(noise)), "noise statistic"
    else:  # neither: the robust scatter of the master itself
        finite = data[np.isfinite(data) & ~mask]
        error = np.full(data.shape, 1.4826 * float(np.median(np.abs(finite - np.median(finite)))))
        source = "robust scatter"
    if per_second:
        data, error = data / per_second, error / per_second
    usable = np.isfinite(data) & np.isfinite(error) & ~mask
    return data, error, usable, source


def _level(values: np.ndarray) -> float:
    """3-sigma clipped mean: a median of masters made from whole ADU is itself quantised (a
    dark's median rate jumps by a quarter between two identical darks), and a plain mean follows
    hot pixels and cosmic rays."""
    return float(sigma_clipped_stats(values, sigma=3.0, maxiters=5)[0])


def _error_model(data: np.ndarray, error: np.ndarray, usable: np.ndarray
                 ) -> tuple[float, float, float]:
    """(centre, variance at the centre, variance per unit above it) of a master's pixels.

    One pixel's UNCERT comes from the scatter of a few inputs (chi with n - 1 degrees of freedom:
    for three inputs a factor 0.3 too small one time in 20), so a per-pixel test against it would
    flag hundreds of ordinary pixels. Its mean square over the pixels near the median is what the
    combine calibrates (docs/combine.md); above the median (hot pixels, a brighter part of a
    flat) shot noise adds variance in proportion to the signal, whose slope is the median of
    ``(UNCERT**2 - v0) / (value - centre)`` over the pixels well above the centre."""
    values = data[usable]
    centre = float(np.median(values))
    spread = 1.4826 * float(np.median(np.abs(values - centre))) or float(np.std(values)) or 1.0
    bulk = usable & (np.abs(data - centre) <= 5 * spread)
    v0 = float(np.mean(np.square(error[bulk]))) if bulk.any() else spread**2
    bright = usable & (data - centre > 5 * math.sqrt(v0))
    slope = 0.0
    if bright.sum() >= 10:
        slope = max(0.0, float(np.median((np.square(error[bright]) - v0) / (data[bright] - centre))))
    return centre, v0, slope


def _smooth_outliers(diff: np.ndarray, variance: np.ndarray, use: np.ndarray,
                     limits: Mapping[str, Any]) -> float:
    """The fraction of pixels where the mean difference over a ``smooth`` x ``smooth`` box
    exceeds ``nsigma`` times its own error: a shadow a few percent deep (a new dust donut) is
    buried in one pixel's noise, not in the box's, which is ``smooth`` times smaller."""
    size = int(limits["smooth"])
    weight = use.astype(np.float64)
    count = uniform_filter(weight, size, mode="constant") * size**2
    total = uniform_filter(np.where(use, diff, 0.0), size, mode="constant") * size**2
    spread = uniform_filter(np.where(use, variance, 0.0), size, mode="constant") * size**2
    full = use & (count >= 0.5 * size**2)  # boxes mostly of usable pixels
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.abs(total[full]) / np.sqrt(spread[full])
    return round(float(np.mean(z > limits["nsigma"])) if z.size else 0.0, 7)


def compare(new: tuple, old: tuple, limits: Mapping[str, Any]) -> dict[str, Any]:
    """The QA figures of ``new`` against ``old`` (each from :func:`_planes`).

    The variance of a pixel's difference is each master's :func:`_error_model` at the *previous*
    master's value there: a hot pixel's shot noise is allowed for, while a bright pixel only the
    new master has (a cosmic ray left in it) gets no such allowance: that is what the test is
    for."""
    (a, ea, ua, source_a), (b, eb, ub, source_b) = new, old
    use = ua & ub
    n = int(use.sum())
    if n == 0:
        return {"n_pixels": 0}
    (_, var_a, slope_a), (centre, var_b, slope_b) = _error_model(a, ea, ua), _error_model(b, eb, ub)
    variance = var_a + var_b + (slope_a + slope_b) * np.clip(np.nan_to_num(b - centre), 0, None)
    # An error plane made from the scatter of a master's inputs cannot see noise they share (the
    # master bias subtracted from every dark): when the differences scatter more than the planes
    # say, the errors are scaled up to their robust scatter (never down; recorded).
    z = (a - b)[use] / np.sqrt(variance[use])
    scale = max(1.0, 1.4826 * float(np.median(np.abs(z - np.median(z)))))
    variance = variance * scale**2
    diff, sigma = a[use] - b[use], np.sqrt(variance[use])
    level_old = _level(b[use])
    return {
        "n_pixels": n,
        "outlier_fraction": round(float(np.mean(np.abs(diff) > limits["nsigma"] * sigma)), 7),
        "smooth_outlier_fraction": _smooth_outliers(a - b, variance, use, limits),
        "level_shift": round(_level(diff) / (scale * math.sqrt(var_a + var_b)), 4),
        "level_change": None if level_old == 0 else round(_level(a[use]) / level_old - 1.0, 5),
        "pixel_error": round(scale * math.sqrt(var_a + var_b), 6), "error_scale": round(scale, 3),
        "errors": source_a if source_a == source_b else f"{source_a} / {source_b}",
    }


def exceeded(figures: Mapping[str, Any], limits: Mapping[str, Any]) -> list[str]:
    """The figures beyond their limits, in words ('outlier_fraction 0.034 > 0.002')."""
    out = []
    for figure, limit in (("outlier_fraction", "max_outlier_fraction"),
                          ("smooth_outlier_fraction", "max_smooth_outlier_fraction"),
                          ("level_shift", "max_level_shift"), ("level_change", "max_level_change")):
        value = figures.get(figure)
        if value is not None and limits.get(limit) is not None and abs(value) > limits[limit]:
            out.append(f"{figure} {value:.4g} (limit {limits[limit]:g})")
    return out


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
        exposure = fields.get("exposure_time") or 0.0
        def nearest(r: Calibration) -> tuple[float, float]:
            ratio = abs(math.log(r.exposure_time / exposure)) if r.exposure_time and exposure else math.inf
            dtemp = abs(r.temperature - temp) if r.temperature is not None and temp is not None else 0.0
            return (round(ratio, 2), round(dtemp))  # a set point's jitter does not beat recency
        found.sort(key=nearest)  # stable: the latest first among equals
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
    new = _planes(fields["path"], (fields.get("stats") or {}).get("noise"), per_second)
    notes = []
    for old in previous:
        try:
            planes = _planes(old.path, (old.stats or {}).get("noise"),
                             old.exposure_time if per_second else None)
        except (OSError, ValueError, IndexError, KeyError) as exc:
            notes.append(f"{kind} {old.id} unreadable ({type(exc).__name__}: {exc})")
            continue
        if planes[0].shape != new[0].shape:
            notes.append(f"{kind} {old.id} has shape {planes[0].shape}, this one {new[0].shape}")
            continue
        figures = compare(new, planes, limits)
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
        qa["verdict"] = "first of its setup"
        notes.insert(0, f"no earlier good {kind} master of this setup to compare with")
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

"""The dark current's temperature law as the caldb's own master darks measure it.

A master dark at one temperature is scaled to a frame at another by the instrument's law
(ccdflow.framework.engine.dark_law). The law's parameter is rarely known for a camera, and a
few percent off is several standard errors on a faint sky. When the caldb holds good master
darks of the frame's setup at temperatures spanning at least ``measure_min_span_c`` (a night
with darks at two set points, or darks from nights at different set points), their dark rates
fit it: one point per temperature cluster (clusters by gaps within the rule's temperature
tolerance), the master of the most exposure (exposure time x frames) standing for it, as its
median rate carries the least of the bias residual. The fitted law replaces the configured one
in the rule used for the choice, so the receipt shows it and the dark step applies it.
"""

from __future__ import annotations

from collections.abc import Sequence

from ccdflow.caldb.selection import CalRecord, judge, scales_with_exposure
from ccdflow.framework.engine.dark_law import fit_law
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.engine.instrument import MatchRule

#: Gates a master dark may fail and still measure the law: it is of another temperature or
#: exposure than the frame, but of its setup, good, valid and within the age window.
_ALLOWED = ("temperature", "exposure")


def law_points(kind: str, meta: FrameMeta, records: Sequence[CalRecord],
               rule: MatchRule) -> list[tuple[float, float, str]]:
    """(temperature C, dark rate, label) per temperature cluster of the usable master darks."""
    usable = sorted(
        (r for r in records if r.temperature is not None and r.exposure_time
         and (r.stats or {}).get("dark_rate") is not None
         and all(reason.split(":")[0] in _ALLOWED for reason in judge(kind, meta, r, rule).reasons)),
        key=lambda r: r.temperature or 0.0)
    gap = rule.temperature_tolerance or 1.0
    clusters: list[list[CalRecord]] = []
    for rec in usable:
        if clusters and (rec.temperature or 0.0) - (clusters[-1][-1].temperature or 0.0) <= gap:
            clusters[-1].append(rec)
        else:
            clusters.append([rec])
    points = []
    for cluster in clusters:
        best = max(cluster, key=lambda r: ((r.exposure_time or 0.0) * (r.n_combined or 1), r.id))
        assert best.temperature is not None and best.stats is not None
        points.append((best.temperature, float(best.stats["dark_rate"]),
                       f"caldb {best.id} at {best.temperature:.2f} C"))
    return points


def with_measured_law(kind: str, meta: FrameMeta, records: Sequence[CalRecord],
                      rule: MatchRule) -> MatchRule:
    """``rule`` with its temperature law fitted to the caldb's master darks where they allow
    it (see the module docstring); ``rule`` itself otherwise, and for types that are not
    scaled (only darks are)."""
    law = rule.temperature_law
    if law is None or not law.measure or not scales_with_exposure(kind):
        return rule
    fitted = fit_law(law, law_points(kind, meta, records, rule))
    return rule if fitted is None else rule.model_copy(update={"temperature_law": fitted})

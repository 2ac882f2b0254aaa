"""How a new master is compared with the previous good master of its setup before it is used.

The figures (see ``ccdflow.caldb.qa``): the fraction of pixels whose difference exceeds
``nsigma`` times the combined error of the two masters, the same over ``smooth`` x ``smooth``
box means, the mean difference in units of one pixel's combined error (``level shift``), and the
relative change of the level (a dark's rate). A master beyond any limit is stored as ``suspect``
and not chosen until a person accepts it. Each calibration type holds its defaults
(``CalibrationType.qa_limits``); an instrument's caldb rule overrides any of them (``caldb:
{flat: {qa: {max_outlier_fraction: 0.01}}}``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from ccdflow.framework.engine.header_spec import Strict

#: The limits every type starts from (a type's ``qa_limits`` changes some of them).
DEFAULT_LIMITS: dict[str, Any] = {
    "enabled": True, "nsigma": 5.0, "max_outlier_fraction": 0.001, "smooth": 5,
    "max_smooth_outlier_fraction": 0.001, "max_level_shift": 1.0, "max_level_change": None,
    "max_temperature_difference": None,
}


class MasterQa(Strict):
    """Overrides of a calibration type's QA limits; a field left out keeps the type's default."""

    enabled: bool | None = Field(None, description="Compare new masters with the previous good one.")
    nsigma: float | None = Field(
        None, gt=0, description="A pixel differs when |new - old| exceeds this many combined errors.")
    max_outlier_fraction: float | None = Field(
        None, ge=0, le=1, description="Largest fraction of differing pixels before 'suspect'.")
    smooth: int | None = Field(
        None, ge=2, le=64, description="Box size (pixels) of the smoothed comparison, which sees "
        "shadows too shallow for one pixel (a dust donut).")
    max_smooth_outlier_fraction: float | None = Field(
        None, ge=0, le=1, description="Largest fraction of pixels whose box mean differs by more "
        "than nsigma box errors.")
    max_level_shift: float | None = Field(
        None, ge=0, description="Largest |median(new - old)| in units of the median combined error.")
    max_temperature_difference: float | None = Field(
        None, gt=0, description="Compare only with a master within this many C (a dark's rate "
        "follows its temperature); null: the rule's temperature tolerance.")
    max_level_change: float | None = Field(
        None, ge=0, description="Largest relative change of the median level (a dark's rate); "
        "null: not judged (a bias or flat level near 0 or normalised to 1).")

    def limits(self, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The type's defaults with this rule's overrides on top."""
        merged = {**DEFAULT_LIMITS, **defaults}
        merged.update({k: v for k, v in self.model_dump().items() if v is not None})
        return merged

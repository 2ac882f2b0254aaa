"""Master flat: the pixel-to-pixel and large-scale response of one filter, normalised to 1."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from statistics import mean
from typing import TYPE_CHECKING, Any, ClassVar

from ccdflow.framework.engine.caltype import CalibrationType
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.io import cards

if TYPE_CHECKING:
    import numpy as np
    from astropy.io import fits


class Flat(CalibrationType):
    name: ClassVar[str] = "flat"
    description: ClassVar[str] = "response of one filter, normalised to a median of 1"
    frame_type: ClassVar[str | None] = "flat"
    order: ClassVar[int] = 30
    default_recipe: ClassVar[tuple[str, ...]] = ("saturation", "overscan", "trim", "linearity", "bias",
                                                 "dark")
    also_match: ClassVar[tuple[str, ...]] = ("filter",)
    normalised: ClassVar[bool] = True
    trend_stat: ClassVar[str] = "level"
    max_age_days: ClassVar[float] = 60.0

    @classmethod
    def stats(cls, median: float, metas: Sequence[FrameMeta],
              levels: Sequence[float]) -> dict[str, tuple[Any, str]]:
        """``CF_LEVEL``: the mean median of the inputs before normalisation (lamp or twilight
        brightness)."""
        finite = [v for v in levels if math.isfinite(v)]
        return {cards.LEVEL.keyword: (round(mean(finite), 3), "mean input level (ADU)")} if finite else {}

    @classmethod
    def ingest_stats(cls, stats: dict[str, float], header: fits.Header, data: np.ndarray,
                     exposure: float | None) -> dict[str, float]:
        stats["flat_median"] = stats["median"]
        return stats

    @classmethod
    def match_cards(cls) -> Mapping[str, tuple[str, str]]:
        return {cards.FILT.keyword: ("filter", "filter")}

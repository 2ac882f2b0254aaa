"""Master bias: the zero-exposure level and its structure, removed from every other frame."""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import mean
from typing import Any, ClassVar

from ccdflow.framework.engine.caltype import CalibrationType
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.io import cards


class Bias(CalibrationType):
    name: ClassVar[str] = "bias"
    description: ClassVar[str] = "zero-exposure level and structure (master of bias frames)"
    frame_type: ClassVar[str | None] = "bias"
    order: ClassVar[int] = 10
    default_recipe: ClassVar[tuple[str, ...]] = ("overscan", "trim")
    trend_stat: ClassVar[str] = "level"

    @classmethod
    def stats(cls, median: float, metas: Sequence[FrameMeta],
              levels: Sequence[float]) -> dict[str, tuple[Any, str]]:
        """``CF_LEVEL``: the overscan level removed plus what is left in the master, the bias
        level people watch drift."""
        finite = [v for v in levels if math.isfinite(v)]
        if not finite:
            return {}
        return {cards.LEVEL.keyword: (round(mean(finite) + median, 4), "bias level of inputs (ADU)")}

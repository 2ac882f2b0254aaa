"""Pedestal step: add (or remove) a constant level so later steps never see negative pixels."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.plugin import Step, StepContext, StepParams


class PedestalParams(StepParams):
    level: float = Field(
        100.0, description="Constant in the frame's own unit (ADU or electrons) to add."
    )
    operation: Literal["add", "subtract"] = Field(
        "add", description="Add the pedestal, or subtract one that an earlier run added."
    )


def apply_pedestal(data: np.ndarray, level: float, operation: str = "add") -> np.ndarray:
    """A float32 copy of ``data`` shifted by ``+level`` (add) or ``-level`` (subtract)."""
    shift = level if operation == "add" else -level
    return np.asarray(data, dtype=np.float32) + np.float32(shift)


class PedestalAdder(Step):
    """Shifts every pixel by a constant; a constant adds no noise, so uncertainty is kept."""

    name = "pedestal"
    Params = PedestalParams
    description = "Add or subtract a constant pedestal level"

    def run(
        self,
        ccd: CCDData,
        params: PedestalParams,
        calibrations: Mapping[str, CCDData],
        context: StepContext,
    ) -> CCDData:
        out = ccd.copy()
        out.data = apply_pedestal(ccd.data, params.level, params.operation)
        return out

"""Mask saturated pixels on the raw ADU values, with optional growth along columns for bleeds."""

from __future__ import annotations

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework import dq
from ccdflow.framework.engine.errors import NoWorkError, UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.numerics.frame_passes import count_at_least


class SaturationParams(StepParams):
    level: float | None = Field(
        None, gt=0, description="Saturation level in raw ADU; None: the header keyword, else the "
        "instrument's `saturation`.",
    )
    keyword: str | None = Field(
        None, description="Header keyword holding the level (e.g. SATURATE); wins over the instrument's.",
    )
    grow_columns: int = Field(
        0, ge=0, le=1000, description="Also mask this many pixels above and below each saturated pixel "
        "along its column (bleed trails run along columns).",
    )


def saturation_mask(data: np.ndarray, level: float, grow_columns: int = 0) -> np.ndarray:
    """Pixels at or above ``level``, grown by ``grow_columns`` along axis 0 (the columns)."""
    return _saturated(data, level, grow_columns)[0]


def _saturated(data: np.ndarray, level: float, grow_columns: int) -> tuple[np.ndarray, int]:
    """The mask of :func:`saturation_mask` and how many pixels it holds."""
    n_at = count_at_least(data, level)
    if not n_at:  # the usual frame: one read, and a mask nobody wrote
        return np.zeros(np.shape(data), bool), 0
    mask = np.asarray(data) >= level
    if not grow_columns:
        return mask, n_at
    from scipy.ndimage import binary_dilation  # only here: every command loads this step

    mask = binary_dilation(mask, structure=np.ones((2 * grow_columns + 1, 1), bool))
    return mask, int(np.count_nonzero(mask))


def saturation_level(ccd: CCDData, params: SaturationParams, context: StepContext) -> float:
    """The level in raw ADU: parameter, then header keyword, then the instrument config."""
    if params.level is not None:
        return params.level
    if params.keyword and params.keyword in ccd.header:
        value = ccd.header[params.keyword]
        try:
            level = float(value)
        except (TypeError, ValueError):
            level = float("nan")
        if not np.isfinite(level) or level <= 0:
            raise UnprocessableInputError(
                "saturation level is not a positive number", path=context.meta.path,
                keyword=params.keyword, value=value, expected="a level in ADU",
            )
        return level
    if "saturation" in context.instrument.model_fields_set:
        return float(context.instrument.saturation)
    raise NoWorkError("no saturation level known (no keyword, no instrument `saturation`)")


class SaturationMasker(Step[SaturationParams]):
    """Runs first, on raw ADU: after overscan or bias subtraction the level is no longer fixed."""

    name = "saturation"
    Params = SaturationParams
    description = "Mask pixels at or above the saturation level (raw ADU), grown along columns."

    def run(self, ccd: CCDData, params: SaturationParams, calibrations, context: StepContext) -> CCDData:
        level = saturation_level(ccd, params, context)
        saturated, n_sat = _saturated(ccd.data, level, params.grow_columns)
        header = header_of(ccd)
        header["CF_SATLV"] = (level, "saturation level used (raw ADU)")
        header["CF_NSAT"] = (n_sat, "pixels masked as saturated (with growth)")
        if params.grow_columns:
            header["CF_SATGR"] = (params.grow_columns, "saturation mask grown along columns (px)")
        mask, flags = dq.flagged(ccd, saturated, dq.SATURATED)
        return CCDData(ccd.data, unit=ccd.unit, header=header, mask=mask, flags=flags,
                       uncertainty=ccd.uncertainty)

"""How the night builds the masters of one calibration type: the combine (method, rejection,
fallback, thresholds), when a small master is warned about and the fewest frames it is built
from. A type declares its defaults (``CalibrationType.combine_options`` and friends); an
instrument's or a night file's ``masters:`` section overrides them per type
(:class:`MasterOptions`), and :class:`MasterSettings` is the result with every value filled in."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, NamedTuple, TypedDict

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ccdflow.framework.builders.masters import Fallback
    from ccdflow.framework.numerics.combine import Clip, Method


class CombineOptions(TypedDict):
    """How a master is combined: ``build_master``'s method, clip and fallback (its identity)."""

    method: Method
    clip: Clip
    fallback: Fallback
    sigma_low: float
    sigma_high: float


class MasterOptions(BaseModel):
    """How the night builds the masters of one type (an instrument's or a night file's
    ``masters:`` entry); a value left out keeps the type's default (``CalibrationType``)."""

    model_config = ConfigDict(extra="forbid")

    method: Literal["median", "mean"] | None = Field(
        None, description="Combine method: mean (default for bias, dark, flat: a sigma-clipped mean "
        "keeps ~1/3 more signal-to-noise than a median) or median.")
    clip: Literal["sigma", "minmax", "none"] | None = Field(
        None, description="Rejection before combining (sigma: one-pass median/MAD-std 3-sigma clip).")
    fallback: Literal["refuse", "none", "minmax"] | None = Field(
        None, description="Fewer than 3 frames for a sigma clip: refuse, no rejection, or minmax "
        "(drop each pixel's highest value: cosmic rays are positive; with 1 frame: none).")
    sigma_low: float | None = Field(None, gt=0, description="Sigma clip threshold below the median.")
    sigma_high: float | None = Field(
        None, gt=0, description="Sigma clip threshold above the median (lower removes more cosmic "
        "rays at a small bias: 2.5 costs -0.02 sigma of one frame).")
    warn_below: int | None = Field(
        None, ge=1, description="Fewer input frames than this: the night warns (report, log, the "
        "master's CF_FEWIN card); a small master adds its noise to every frame it calibrates.")
    min_frames: int | None = Field(
        None, ge=1, description="Fewest input frames a master is built from; a bad-pixel mask: the "
        "fewest frames of the master dark it is made from (hot pixels from fewer are unreliable).")


class MasterSettings(NamedTuple):
    """:class:`MasterOptions` with every value filled in (the type's default where unset)."""

    combine: CombineOptions
    warn_below: int
    min_frames: int

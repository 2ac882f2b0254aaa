"""How the night builds the masters of one calibration type: the combine (method, rejection,
fallback, thresholds), when a small master is warned about and the fewest frames it is built
from. A type declares its defaults (``CalibrationType.combine_options`` and friends); an
instrument's or a night file's ``masters:`` section overrides them per type
(:class:`MasterOptions`), and :class:`MasterSettings` is the result with every value filled in."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Literal, NamedTuple, TypedDict

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from ccdflow.framework.builders.masters import Fallback
    from ccdflow.framework.engine.caltype import CalibrationType
    from ccdflow.framework.engine.config import Setting
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
    sigma_low: float | None = Field(
        None, gt=0, description="Sigma clip threshold below the median, in standard deviations "
        "(MAD-based).")
    sigma_high: float | None = Field(
        None, gt=0, description="Sigma clip threshold above the median, in standard deviations (lower "
        "removes more cosmic rays at a small bias: 2.5 costs -0.02 sigma of one frame).")
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


def layered_master_settings(caltypes: Mapping[str, type[CalibrationType]],
                            layers: Iterable[tuple[str, str, Mapping[str, MasterOptions]]]
                            ) -> dict[str, dict[str, Setting]]:
    """Per calibration type (in build order), every :class:`MasterOptions` value in force and the
    layer that set it: the type's default, then each ``(layer, source, masters)`` in turn (the
    instrument's ``masters:``, then each night file's), as :func:`~ccdflow.framework.engine.
    config.build` merges them."""
    from ccdflow.framework.engine.config import Setting

    layers = list(layers)
    out: dict[str, dict[str, Setting]] = {}
    for name, caltype in sorted(caltypes.items(), key=lambda item: (item[1].order, item[0])):
        default = caltype.settings()
        values = {**default.combine, "warn_below": default.warn_below, "min_frames": default.min_frames}
        row = {key: Setting(values[key], "type default", caltype.__module__)
               for key in MasterOptions.model_fields}
        for layer, source, masters in layers:
            if name in masters:
                for key, value in masters[name].model_dump(exclude_none=True).items():
                    row[key] = Setting(value, layer, source)
        out[name] = row
    return out

"""The fringe frame: a calibration type that ccdflow does not ship, added by this plugin.

Fringes are night-sky emission lines interfering inside the thin silicon of a red-sensitive
CCD: curved bands fixed to the chip, additive, and as strong as the line emission, which
follows the sky. A flat (continuum light) does not remove them, so they are measured on
night-sky frames (blank fields, stars elsewhere in each) and subtracted from science frames.

How the master is made, with ccdflow's calibration-type hooks:

1. each night-sky frame is preprocessed like a science frame up to the flat (the type's
   ``default_recipe``: example-cam has no recipe for ``sky`` frames, so ccdflow runs this one);
2. ``prepare_input``: its sky level (the median of its good pixels) is removed and it is divided
   by that level, so every input holds the fringe pattern per unit sky whatever the sky's
   brightness was; pixels far above the sky (stars, cosmic rays) are masked;
3. ccdflow's median combine (sigma-clipped) keeps what every frame shares, the fringes, and
   drops the stars, which are somewhere else in each frame;
4. ``finish_master``: the median left over from the inputs' sky estimates is removed, so the
   master is a zero-mean pattern in units of the sky level.

The ``fringe`` step (``fringe.py``) fits how much of this pattern each science frame holds.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import numpy as np
from astropy.nddata import CCDData

from ccdflow.plugin import CalibrationType, FrameMeta, UnprocessableInputError, cards

#: Pixels more than this many robust sigma above a night-sky frame's sky are masked as sources.
SOURCE_SIGMA = 5.0


def unit_sky(data: np.ndarray, good: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """``(data - sky) / sky`` as float32, the sources mask, and the sky level.

    The sky is the median of the ``good`` pixels; the spread is the MAD of the same pixels,
    which the fringes themselves widen a little, so only clear sources are masked."""
    values = data[good]
    sky = float(np.median(values)) if values.size else float("nan")
    if not np.isfinite(sky) or sky <= 0:
        raise UnprocessableInputError(
            f"night-sky frame has a sky level of {sky:.4g} ADU after flat-fielding; a fringe "
            "frame needs a positive sky (shutter closed, or not a night-sky frame?)")
    sigma = 1.4826 * float(np.median(np.abs(values - np.float32(sky))))
    sources = data > sky + SOURCE_SIGMA * max(sigma, 1e-6 * sky)
    scaled = (np.asarray(data, np.float32) - np.float32(sky)) / np.float32(sky)
    return scaled, sources, sky


class FringeFrame(CalibrationType):
    name: ClassVar[str] = "fringe"
    description: ClassVar[str] = "fringe pattern of a red filter per unit sky, from night-sky frames"
    frame_type: ClassVar[str | None] = "sky"
    order: ClassVar[int] = 50  # after the flats: its inputs are flat-fielded
    card_tag: ClassVar[str] = "FRNG"
    default_recipe: ClassVar[tuple[str, ...]] = ("overscan", "trim", "bias", "dark", "flat")
    also_match: ClassVar[tuple[str, ...]] = ("filter",)
    trend_stat: ClassVar[str] = "noise"  # the pattern's strength, watched over the months
    max_age_days: ClassVar[float] = 60.0  # the silicon does not change; the fit follows the sky

    @classmethod
    def prepare_input(cls, ccd: CCDData, meta: FrameMeta) -> CCDData:
        good = np.isfinite(ccd.data)
        if ccd.mask is not None:
            good &= ~np.asarray(ccd.mask, bool)
        try:
            scaled, sources, _ = unit_sky(ccd.data, good)
        except UnprocessableInputError as exc:
            raise UnprocessableInputError(str(exc), path=str(meta.path)) from None
        mask = sources if ccd.mask is None else sources | np.asarray(ccd.mask, bool)
        return CCDData(scaled, unit="", mask=mask, header=ccd.header)

    @classmethod
    def finish_master(cls, data: np.ndarray, error: np.ndarray,
                      mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        used = data[~mask] if mask.any() else data
        offset = np.float32(np.median(used)) if used.size else np.float32(0)
        return np.where(mask, np.float32(0), data - offset).astype(np.float32), error

    @classmethod
    def match_cards(cls) -> Mapping[str, tuple[str, str]]:
        return {cards.FILT.keyword: ("filter", "filter")}

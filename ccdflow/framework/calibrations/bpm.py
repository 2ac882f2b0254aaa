"""Bad-pixel mask: a bit mask made from a master dark (hot pixels) and a master flat (dead and
low pixels), never combined from raw frames."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from ccdflow.framework import dq
from ccdflow.framework.engine.caltype import CalibrationType

if TYPE_CHECKING:
    from astropy.io import fits
    from astropy.nddata import CCDData


#: The bits of a ccdflow bad-pixel mask, defined here once (the builder sets them, the bpm step
#: reads them): a pixel may carry several.
HOT, LOW, UNSTABLE = 1, 2, 4
BIT_NAMES = {HOT: "hot (dark rate)", LOW: "dead or low (flat)", UNSTABLE: "unstable (temporal scatter)"}
#: Each BPM bit -> the product's DQ bit (:mod:`ccdflow.framework.dq`) the bpm step sets for it.
PRODUCT_BITS = {HOT: dq.HOT, LOW: dq.LOW, UNSTABLE: dq.UNSTABLE}


class BadPixelMask(CalibrationType):
    name: ClassVar[str] = "bpm"
    description: ClassVar[str] = "bit mask of hot, low/dead and unstable pixels"
    frame_type: ClassVar[str | None] = None  # made from master darks and flats
    order: ClassVar[int] = 40
    card_tag: ClassVar[str] = "BPM"
    max_age_days: ClassVar[float] = 365.0
    #: Fewest frames of the master dark a mask is made from: a sigma clip needs 3 values to reject
    #: a cosmic ray, and hot pixels found in a dark of 1-2 frames are mostly its cosmic rays (a
    #: 1-frame dark flagged 3618 false hot pixels against 826 true ones), so the night builds no
    #: mask from one and says why. Darks of fewer than 5 frames are warned about (Dark.warn_below).
    min_frames: ClassVar[int] = 3
    #: A bit mask has no error plane to compare within: its QA is the dark's and the flat's.
    qa_limits: ClassVar[Mapping[str, Any]] = {"enabled": False}

    @classmethod
    def ingest_stats(cls, stats: dict[str, float], header: fits.Header, data: np.ndarray,
                     exposure: float | None) -> dict[str, float]:
        finite = data[np.isfinite(data)]
        stats["fraction_masked"] = float(np.mean(finite != 0))
        return stats

    @classmethod
    def prepare(cls, ccd: CCDData) -> CCDData:
        """A bit mask read as float32 back to integers, once per load instead of once per frame;
        left alone when it is not one (the bpm step then says so)."""
        from astropy.nddata import CCDData

        values = ccd.data.astype(np.int32)
        if not np.array_equal(values, ccd.data):
            return ccd
        dtype = np.uint8 if values.size and values.min() >= 0 and values.max() < 256 else np.int32
        return CCDData(values.astype(dtype), unit=ccd.unit, header=ccd.header, mask=ccd.mask)

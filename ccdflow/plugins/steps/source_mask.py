"""Mask bright sources by image segmentation (photutils), e.g. before combining sky flats."""

from __future__ import annotations

import warnings

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework import dq
from ccdflow.framework.engine.errors import AlgorithmError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of


class SourceMaskParams(StepParams):
    nsigma: float = Field(3.0, gt=0, description="Detection threshold above the background, in sigma.")
    npixels: int = Field(
        5, ge=1, description="Fewest connected pixels above the threshold that make a source.")
    dilate: int = Field(2, ge=0, le=50, description="Grow each source by this many pixels (its wings).")
    box_size: int | None = Field(
        None, ge=8, description="Background2D box size in pixels; None: one sigma-clipped level.",
    )
    apply_to_mask: bool = Field(
        True, description="OR the sources into the frame's mask; false keeps them only in "
        "`ccd.source_mask` (not written to the product).",
    )


def source_mask(
    data: np.ndarray, mask: np.ndarray | None = None, *, nsigma: float = 3.0, npixels: int = 5,
    dilate: int = 2, box_size: int | None = None,
) -> tuple[np.ndarray, int]:
    """(boolean source mask, number of sources) from a segmentation above background + nsigma."""
    from astropy.stats import sigma_clipped_stats
    from photutils.background import Background2D, MedianBackground
    from photutils.segmentation import detect_sources
    from photutils.utils import NoDetectionsWarning
    from scipy.ndimage import binary_dilation

    data = np.asarray(data, np.float32)
    if box_size is None:
        _, level, std = sigma_clipped_stats(data, mask=mask, sigma=3.0, maxiters=5)
        residual, threshold = data - np.float32(level), np.float32(nsigma * std)
    else:
        bkg = Background2D(data, box_size, mask=mask, filter_size=3, bkg_estimator=MedianBackground())
        residual, threshold = data - bkg.background, nsigma * bkg.background_rms
    if not np.isfinite(np.max(threshold)):
        raise AlgorithmError("source mask: the background noise is not finite (all pixels masked?)")
    with warnings.catch_warnings():  # an empty field is an answer, not a warning
        warnings.simplefilter("ignore", NoDetectionsWarning)
        # positional: photutils 3 renamed the keyword npixels to n_pixels
        segments = detect_sources(residual, threshold, npixels, mask=mask)
    if segments is None:
        return np.zeros(data.shape, bool), 0
    found = segments.data > 0
    if dilate:
        found = binary_dilation(found, iterations=dilate)
    return found, int(segments.n_labels)


class SourceMasker(Step[SourceMaskParams]):
    """Opt-in (not in the default recipes): add it to a flat recipe when flats are sky flats."""

    name = "source_mask"
    Params = SourceMaskParams
    description = "Mask bright sources (photutils segmentation) in the frame's mask."

    @classmethod
    def status_keyword(cls) -> str:
        return "CF_SRCMK"

    def run(self, ccd: CCDData, params: SourceMaskParams, calibrations, context: StepContext) -> CCDData:
        found, n = source_mask(ccd.data, None if ccd.mask is None else np.asarray(ccd.mask, bool),
                               nsigma=params.nsigma, npixels=params.npixels, dilate=params.dilate,
                               box_size=params.box_size)
        header = header_of(ccd)
        header["CF_NSRC"] = (n, "sources found by the source mask")
        header["CF_SRCPX"] = (int(found.sum()), "pixels in the source mask (dilated)")
        mask, flags = ccd.mask, ccd.flags
        if params.apply_to_mask:
            mask, flags = dq.flagged(ccd, found, dq.SOURCE)
        out = CCDData(ccd.data, unit=ccd.unit, header=header, mask=mask, flags=flags,
                      uncertainty=ccd.uncertainty)
        out.source_mask = found
        return out

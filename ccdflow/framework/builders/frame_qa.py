"""Quality figures of a reduced science frame, measured once on the product before it is written.

What a person checks first the morning after (BANZAI's per-frame QC, Siril's statistics): the
sky level and its noise against the noise the UNCERT plane promises, the number of stars, their
FWHM and ellipticity, and how much of the frame the DQ plane flags. The figures go into the
product as ``CF_Q...`` cards, so a re-run that finds the product up to date reads them back
instead of measuring again; the instrument's ``frame_qa:`` limits judge them
(:mod:`ccdflow.framework.engine.frame_qa_limits`). Every figure is in the product's units.
photutils' detection and astropy's profiles are computed by ccdflow's own compiled passes, to
the same figures (0.04 s a 2048 x 2048 frame instead of 0.3, and no photutils import). See
docs/frame-qa.md for the method and why each choice.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.nddata import StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.builders.frame_qa_stars import DqBits, Sources, measure_stars
from ccdflow.framework.engine.frame_qa_limits import FrameQaLimits, flags, pixel_scale
from ccdflow.framework.io.cards import Card
from ccdflow.framework.numerics import frame_qa_detect
from ccdflow.framework.numerics import frame_qa_kernels as kernels
from ccdflow.framework.numerics.clipped import clipped_median_std

if TYPE_CHECKING:
    from astropy.io import fits
    from astropy.nddata import CCDData

#: The figures of a frame, in this order in report.json (``fwhm_arcsec`` when the scale is known).
KEYS = ("sky", "sky_noise", "expected_noise", "noise_ratio", "n_stars", "fwhm", "fwhm_arcsec",
        "ellipticity", "cosmic_pixels", "saturated_fraction", "masked_fraction", "unit")

#: figure -> the product's card (``fwhm_arcsec`` is not one: the scale may be set later).
CARDS: dict[str, Card] = {
    "sky": Card("CF_QSKY", "QA: sky level (sigma-clipped median)", float),
    "sky_noise": Card("CF_QSNOI", "QA: sky noise (robust std)", float),
    "expected_noise": Card("CF_QEXPN", "QA: median UNCERT over the sky", float),
    "noise_ratio": Card("CF_QNRAT", "QA: robust std of (sky - level) / UNCERT", float),
    "n_stars": Card("CF_QNSTR", "QA: sources detected at 5 sigma", int),
    "fwhm": Card("CF_QFWHM", "QA: median star FWHM (px, Moffat fits)", float),
    "ellipticity": Card("CF_QELL", "QA: median star ellipticity 1 - b/a", float),
    "cosmic_pixels": Card("CF_QNCR", "QA: pixels flagged COSMIC", int),
    "saturated_fraction": Card("CF_QSATF", "QA: fraction of pixels flagged SATURATED", float),
    "masked_fraction": Card("CF_QMSKF", "QA: fraction with a DQ bit (not SOURCE)", float),
    "unit": Card("CF_QUNIT", "QA: unit of sky, noise figures"),
}

#: Detection: 5 sigma on the image smoothed by a Gaussian of 1 px sigma (to 3 sigmas: 7 taps),
#: at least 5 pixels connected by a side or a corner.
DETECT_SIGMA, SMOOTH_SIGMA, DETECT_PIXELS = 5.0, 1.0, 5
#: Values used for each sky statistic: a regular subsample beyond this (0.2 % error on a std).
SAMPLE = 100_000
#: The DQ bits the defects kernel reads: a defect is any bit but SOURCE (a bright star of the
#: source_mask step is good data), MASKED for a masked pixel without a bit, COSMIC, SATURATED.
_BITS = np.array([dq.ALL & ~dq.SOURCE, dq.MASKED, dq.COSMIC_RAY, dq.SATURATED], dq.DTYPE)


def measure(ccd: CCDData) -> dict[str, Any]:
    """The figures of ``ccd`` (every key of :data:`KEYS` but ``fwhm_arcsec``); a figure that
    cannot be measured (no unmasked pixel, no UNCERT plane, no isolated star) is None. Each
    whole-frame step is one compiled pass (:mod:`~ccdflow.framework.numerics.frame_qa_kernels`);
    the statistics read a regular subsample (:class:`_Grid`)."""
    data = np.ascontiguousarray(ccd.data, np.float32)
    bits = DqBits(ccd)
    uncert = _uncertainty(ccd)
    unc = np.empty((0, 0), np.float32) if uncert is None else uncert
    defect = np.empty(data.shape, bool)
    n_cosmic, n_saturated, n_defect, n_positive = kernels.defects(
        data.reshape(-1), bits.flags.reshape(-1), bits.mask.reshape(-1), _BITS, unc.reshape(-1),
        defect.reshape(-1))
    figures: dict[str, Any] = {
        "cosmic_pixels": n_cosmic,
        "saturated_fraction": n_saturated / data.size,
        "masked_fraction": n_defect / data.size,
        "unit": "" if ccd.unit is None else ccd.unit.to_string(),
        "sky": None, "sky_noise": None, "expected_noise": None, "noise_ratio": None,
        "n_stars": 0, "fwhm": None, "ellipticity": None,
    }
    if n_defect == data.size:
        return figures
    good = _Grid(data.size - n_defect, data.shape[-1], defect)
    level = np.float32(clipped_median_std(good.of(data))[0])
    smooth = np.empty(data.shape, np.float32)
    kernels.smooth_residual(data, defect, level, _gaussian_weights(SMOOTH_SIGMA, 3.0), smooth)
    sources = _detect(smooth, clipped_median_std(good.of(smooth))[1], defect, data, level, unc)
    # the smoothed image's 5 sigma isophote lies at ~1.5 sigma of one pixel: growing the sources
    # to drop their outer wings changes the sky noise by < 0.3 % (measured), for 40 ms a frame
    n_sky, n_sky_positive, outside = data.size - n_defect, n_positive, sources is not None
    if sources is not None:
        n_sky -= int(sources.size[sources.kept].sum())
        n_sky_positive -= int(sources.positive[sources.kept].sum())
        if n_sky == 0:  # every good pixel in a source: the sky is all of them
            n_sky, n_sky_positive, outside = data.size - n_defect, n_positive, False
    if n_sky_positive == 0:
        uncert = None  # no plane, or none with a positive value: no noise to compare with
    sky_pixels = _Grid(n_sky if uncert is None else n_sky_positive, data.shape[-1], defect)
    unc_values = np.empty(0, np.float32)
    if outside and sources is not None:
        sky_pixels.drop(sources.kept[sky_pixels.on(sources.labels)])
    if uncert is not None:
        unc_values = sky_pixels.on(uncert)
        sky_pixels.drop(~(unc_values > 0))
        unc_values = unc_values[sky_pixels.keep]
    values = sky_pixels.of(data)
    sky, sky_noise = clipped_median_std(values)
    figures.update(sky=sky, sky_noise=sky_noise)
    if uncert is not None and values.size:
        figures["expected_noise"] = float(np.median(unc_values))
        # pixel by pixel: UNCERT varies (vignetting, dust, hot pixels), so the ratio of two
        # medians would exceed 1 on a correct reduction; this is 1 there (issue 14's pull)
        figures["noise_ratio"] = clipped_median_std((values - np.float32(sky)) / unc_values)[1]
    if sources is not None:
        figures["n_stars"] = int(np.count_nonzero(sources.kept))
        figures.update(measure_stars(data, sky, sources, defect, bits, sky_noise))
    return {k: _rounded(v) for k, v in figures.items()}


class _Grid:
    """The pixels without a defect (``count`` of them) on a regular grid of about
    :data:`SAMPLE` pixels (statistics of a 4k frame in milliseconds). The step is prime to the
    row length, so the sample walks across columns instead of keeping a few (a bad column
    never dominates)."""

    def __init__(self, count: int, row: int, defect: np.ndarray) -> None:
        step = max(1, math.ceil(count / SAMPLE))
        while step > 1 and math.gcd(step, row) != 1:
            step += 1
        self.step = step
        self.keep = ~defect.reshape(-1)[::step]
        self._at: np.ndarray | None = None

    def on(self, array: np.ndarray) -> np.ndarray:
        """``array``'s values on the whole grid."""
        return array.reshape(-1)[::self.step]

    def drop(self, where: np.ndarray) -> None:
        """No longer keep the grid's pixels where ``where`` (on the whole grid) holds."""
        self.keep &= ~where
        self._at = None

    def of(self, array: np.ndarray) -> np.ndarray:
        """``array``'s values at the kept pixels (gathered by index: twice as fast as a mask
        on the strided view)."""
        if self._at is None:
            self._at = np.flatnonzero(self.keep) * self.step
        return array.reshape(-1)[self._at]


def _gaussian_weights(sigma: float, truncate: float) -> np.ndarray:
    """scipy.ndimage's Gaussian kernel (``gaussian_filter(sigma, truncate=truncate)``), to the bit."""
    radius = int(truncate * sigma + 0.5)
    x = np.arange(-radius, radius + 1)
    phi = np.exp(-0.5 / (sigma * sigma) * x ** 2)
    return phi / phi.sum()


def _uncertainty(ccd: CCDData) -> np.ndarray | None:
    """The UNCERT plane as standard deviations (a variance plane converted), or None."""
    if ccd.uncertainty is None:
        return None
    unc = ccd.uncertainty
    if not isinstance(unc, StdDevUncertainty):
        unc = unc.represent_as(StdDevUncertainty)
    return np.ascontiguousarray(unc.array, np.float32)


def _detect(smooth: np.ndarray, noise: float, defect: np.ndarray, data: np.ndarray,
            level: np.float32, unc: np.ndarray) -> Sources | None:
    """Sources of the smoothed image above DETECT_SIGMA times its own noise, as photutils'
    ``detect_sources`` finds them (8-connected, at least DETECT_PIXELS); None when none."""
    if not noise > 0:
        return None
    labels = np.zeros(smooth.shape, np.int32)
    # float32 against float32, as numpy compares a float32 image with a Python float
    _, size, positive, box, peak = frame_qa_detect.label_sources(
        smooth, defect, np.float32(DETECT_SIGMA * noise), data, level, unc, labels)
    kept = size >= DETECT_PIXELS
    kept[0] = False
    return Sources(labels, kept, box, peak, size, positive) if kept.any() else None


def _rounded(value: Any) -> Any:
    """Six significant digits: the cards (and so the product's bytes) do not carry float noise;
    a NaN (a statistic of nothing) is None, not measured."""
    if not isinstance(value, float):
        return value
    return float(f"{value:.6g}") if math.isfinite(value) else None


def write_cards(header: fits.Header, figures: dict[str, Any]) -> None:
    """The figures as ``CF_Q...`` cards; a figure not measured gets no card."""
    for key, card in CARDS.items():
        if figures.get(key) is not None:
            card.put(header, figures[key])


def read_cards(header: fits.Header | dict) -> dict[str, Any] | None:
    """The figures a product's cards hold (``fwhm_arcsec`` not yet), or None when it has none
    (made before ccdflow measured them)."""
    if CARDS["n_stars"].keyword not in header:
        return None
    return {key: card.get(header) for key, card in CARDS.items()}


def figures_and_flags(header: fits.Header | dict, limits: FrameQaLimits,
                      binning: tuple[int, int] = (1, 1),
                      figures: dict[str, Any] | None = None) -> tuple[dict[str, Any], list[str]]:
    """A product's figures (its cards, or ``figures`` measured) with ``fwhm_arcsec`` and the
    flags its instrument's limits raise: ``entry["qa"]``, ``entry["qa_flags"]``."""
    figures = dict(figures if figures is not None else read_cards(header) or {})
    scale = pixel_scale(header, limits, binning)
    fwhm = figures.get("fwhm")
    figures["fwhm_arcsec"] = None if fwhm is None or scale is None else _rounded(fwhm * scale)
    figures = {key: figures.get(key) for key in KEYS}
    return figures, flags(figures, limits)

"""Quality figures of a reduced science frame, measured once on the product before it is written.

What a person checks first the morning after (BANZAI's per-frame QC, Siril's statistics): the
sky level and its noise against the noise the UNCERT plane promises, the number of stars, their
FWHM and ellipticity (photutils), and how much of the frame the DQ plane flags. The figures go
into the product as ``CF_Q...`` cards, so a re-run that finds the product up to date reads them
back instead of measuring again; the instrument's ``frame_qa:`` limits judge them
(:mod:`ccdflow.framework.engine.frame_qa_limits`). Every figure is in the product's units.
See docs/frame-qa.md for the method and why each choice.
"""

from __future__ import annotations

import math
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from astropy.modeling import models
from astropy.nddata import StdDevUncertainty
from astropy.stats import sigma_clipped_stats
from scipy import ndimage, optimize

from ccdflow.framework import dq
from ccdflow.framework.engine.frame_qa_limits import FrameQaLimits, flags, pixel_scale
from ccdflow.framework.io.cards import Card

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

#: Detection: 5 sigma on the image smoothed by a Gaussian of 1 px sigma, at least 5 pixels.
DETECT_SIGMA, SMOOTH_SIGMA, DETECT_PIXELS = 5.0, 1.0, 5
#: Stars measured: peak at least 10 sky sigmas (fainter ones give noisy widths), the brightest
#: 30 at most (more moves the median little and costs ~3 ms each).
MIN_PEAK_SNR, MAX_STARS = 10.0, 30
#: A Moffat beta above this is a Gaussian star (the profiles differ by < 1 % in FWHM).
MOFFAT_GAUSSIAN = 20.0
#: Values used for each sky statistic: a regular subsample beyond this (0.2 % error on a std).
SAMPLE = 100_000


def measure(ccd: CCDData) -> dict[str, Any]:
    """The figures of ``ccd`` (every key of :data:`KEYS` but ``fwhm_arcsec``); a figure that
    cannot be measured (no unmasked pixel, no UNCERT plane, no isolated star) is None."""
    data = np.asarray(ccd.data, np.float32)
    bits = dq.of(ccd)
    bits = np.zeros(data.shape, dq.DTYPE) if bits is None else bits
    # SOURCE marks a bright star of the source_mask step: good data for the stars, not the sky
    defect = ((bits & dq.DTYPE(dq.ALL & ~dq.SOURCE)) != 0) | ~np.isfinite(data)
    figures: dict[str, Any] = {
        "cosmic_pixels": int(np.count_nonzero(bits & dq.COSMIC_RAY)),
        "saturated_fraction": float(np.count_nonzero(bits & dq.SATURATED)) / data.size,
        "masked_fraction": float(np.count_nonzero(defect)) / data.size,
        "unit": "" if ccd.unit is None else ccd.unit.to_string(),
        "sky": None, "sky_noise": None, "expected_noise": None, "noise_ratio": None,
        "n_stars": 0, "fwhm": None, "ellipticity": None,
    }
    if defect.all():
        return figures
    level = _clipped(*_sampled(~defect, data))[1]
    residual = np.where(defect, np.float32(0), data - np.float32(level))
    smooth = ndimage.gaussian_filter(residual, SMOOTH_SIGMA, truncate=3.0)
    segments = _detect(smooth, defect)
    # the smoothed image's 5 sigma isophote lies at ~1.5 sigma of one pixel: growing the sources
    # to drop their outer wings changes the sky noise by < 0.3 % (measured), for 40 ms a frame
    sky_pixels = ~defect if segments is None else ~defect & (segments.data == 0)
    if not sky_pixels.any():
        sky_pixels = ~defect
    uncert = _uncertainty(ccd)
    if uncert is not None and (sky_pixels & (uncert > 0)).any():
        sky_pixels &= uncert > 0
    else:
        uncert = None  # no plane, or none with a positive value: no noise to compare with
    values, unc = _sampled(sky_pixels, data, np.ones_like(data) if uncert is None else uncert)
    _, sky, sky_noise = _clipped(values)
    figures.update(sky=sky, sky_noise=sky_noise)
    if uncert is not None and unc.size:
        figures["expected_noise"] = float(np.median(unc))
        # pixel by pixel: UNCERT varies (vignetting, dust, hot pixels), so the ratio of two
        # medians would exceed 1 on a correct reduction; this is 1 there (issue 14's pull)
        figures["noise_ratio"] = _clipped((values - np.float32(sky)) / unc)[2]
    if segments is not None:
        figures["n_stars"] = int(segments.n_labels)
        # a star near these has no true profile: saturated (and its bleed), no data
        unusable = (bits & dq.DTYPE(dq.SATURATED | dq.NO_DATA | dq.NON_FINITE)) != 0
        figures.update(_stars(data - np.float32(sky), residual, segments, defect, unusable, sky_noise))
    return {k: _rounded(v) for k, v in figures.items()}


def _sampled(where: np.ndarray, *arrays: np.ndarray) -> list[np.ndarray]:
    """Each of ``arrays`` where ``where`` is True, on a regular grid of about :data:`SAMPLE`
    pixels (statistics of a 4k frame in milliseconds). The step is prime to the row length, so
    the sample walks across columns instead of keeping a few (a bad column never dominates)."""
    step = max(1, math.ceil(np.count_nonzero(where) / SAMPLE))
    while step > 1 and math.gcd(step, where.shape[-1]) != 1:
        step += 1
    keep = where.ravel()[::step]
    return [np.asarray(a).ravel()[::step][keep] for a in arrays]


def _clipped(values: np.ndarray) -> tuple[float, float, float]:
    """(mean, median, std) after a 3-sigma clip, the std from the MAD (robust to the stars and
    cosmic rays left in, unbiased for Gaussian noise)."""
    mean, median, std = sigma_clipped_stats(values, sigma=3.0, maxiters=5, stdfunc="mad_std")
    return float(mean), float(median), float(std)


def _uncertainty(ccd: CCDData) -> np.ndarray | None:
    """The UNCERT plane as standard deviations (a variance plane converted), or None."""
    if ccd.uncertainty is None:
        return None
    unc = ccd.uncertainty
    if not isinstance(unc, StdDevUncertainty):
        unc = unc.represent_as(StdDevUncertainty)
    return np.asarray(unc.array, np.float32)


def _detect(smooth: np.ndarray, defect: np.ndarray) -> Any:
    """Sources of the smoothed image above DETECT_SIGMA times its own noise; None when none."""
    from photutils.segmentation import detect_sources
    from photutils.utils.exceptions import NoDetectionsWarning

    noise = _clipped(*_sampled(~defect, smooth))[2]
    if not noise > 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NoDetectionsWarning)  # none is a figure: n_stars 0
        return detect_sources(smooth, DETECT_SIGMA * noise, n_pixels=DETECT_PIXELS, mask=defect)


def _stars(image: np.ndarray, residual: np.ndarray, segments: Any, defect: np.ndarray,
           unusable: np.ndarray, sky_noise: float) -> dict[str, float | None]:
    """Median FWHM and ellipticity (:func:`_fit`) of the brightest isolated, unsaturated stars
    with a clean core; empty when there is none. A masked pixel in a star's
    wings (a cosmic ray, a hot pixel) is left out of its fit: refusing every star with one would
    refuse most stars of a frame with 1 % masked pixels and a 25 x 25 pixel fit box."""
    from photutils.segmentation import SourceCatalog

    candidates = _bright_unsaturated(residual, segments, unusable, MIN_PEAK_SNR * sky_noise)
    if not candidates:
        return {}
    catalog = SourceCatalog(image, segments, mask=defect).select_labels(candidates)
    widths = np.asarray(catalog.fwhm.value, float)
    if not np.isfinite(widths).any():
        return {}
    width = float(np.nanmedian(widths))
    radius, core = int(np.clip(math.ceil(1.5 * width), 4, 25)), max(2, math.ceil(width))
    shapes: list[tuple[float, float]] = []
    for i in np.argsort(-np.asarray(catalog.max_value, float)):
        label, x, y = catalog.labels[i], catalog.x_centroid[i], catalog.y_centroid[i]
        box, centre = _box(image.shape, x, y, radius), _box(image.shape, x, y, core)
        if (box is None or centre is None or defect[centre].any() or unusable[box].any()
                or np.setdiff1d(segments.data[centre], (0, label)).size):
            continue  # at the edge, a masked core, saturation nearby, or a neighbour too close
        # masked pixels and a neighbour's pixels in the wings are left out of the fits
        shape = _fit(image, box, ~defect[box] & np.isin(segments.data[box], (0, label)), x, y)
        if shape is not None and 0.5 < shape[0] < 2 * radius:
            shapes.append(shape)
        if len(shapes) == MAX_STARS:
            break
    if not shapes:
        return {}
    fwhm, ellipticity = np.median(np.array(shapes), axis=0)
    return {"fwhm": float(fwhm), "ellipticity": float(ellipticity)}


def _bright_unsaturated(residual: np.ndarray, segments: Any, unusable: np.ndarray,
                        min_peak: float) -> list[int]:
    """Labels of the 2 MAX_STARS brightest sources peaking above ``min_peak`` with no unusable
    (saturated, no-data) pixel in their box grown by 2 px: a field of saturated stars still
    yields its unsaturated ones."""
    inside = segments.data > 0
    peaks = np.zeros(segments.max_label + 1, np.float32)
    np.maximum.at(peaks, segments.data[inside], residual[inside])
    out: list[int] = []
    slices = segments.slices
    index = {label: i for i, label in enumerate(segments.labels)}
    for label in np.argsort(-peaks):
        if peaks[label] < min_peak or len(out) == 2 * MAX_STARS:
            break
        sl = slices[index[label]]
        if not unusable[tuple(slice(max(0, s.start - 2), s.stop + 2) for s in sl)].any():
            out.append(int(label))
    return out


def _box(shape: tuple[int, ...], x: float, y: float, radius: int) -> tuple[slice, slice] | None:
    """The (2 radius + 1)^2 cutout around (x, y), or None when it leaves the frame."""
    if not (np.isfinite(x) and np.isfinite(y)):
        return None
    ix, iy = int(round(x)), int(round(y))
    if ix - radius < 0 or iy - radius < 0 or ix + radius >= shape[1] or iy + radius >= shape[0]:
        return None
    return slice(iy - radius, iy + radius + 1), slice(ix - radius, ix + radius + 1)


def _fit(image: np.ndarray, box: tuple[slice, slice], good: np.ndarray, x: float,
         y: float) -> tuple[float, float] | None:
    """(FWHM, ellipticity) of one star. The ellipticity 1 - b/a is an elliptical Gaussian's
    (astropy's ``Gaussian2D``: its axes follow the core, which a trail stretches); the FWHM a
    circular Moffat's (``Moffat2D``: a Gaussian fit reads a Moffat star 6-13 % wide), unless
    the Moffat runs to its Gaussian limit (beta -> infinity, where it never converges): the
    star is Gaussian and the Gaussian's FWHM is the one. None when a fit fails or wanders off
    the star."""
    cut = image[box][good].astype(float)
    yy, xx = (a[good].astype(float) for a in np.mgrid[box])
    gauss = _least_squares(models.Gaussian2D, xx, yy, cut, [float(cut.max()), x, y, 1.5, 1.5, 0.0])
    if gauss is None or math.hypot(gauss[1] - x, gauss[2] - y) > 2.0:
        return None
    sx, sy = abs(gauss[3]), abs(gauss[4])
    if not min(sx, sy) > 0:
        return None
    fwhm = 2 * math.sqrt(2 * math.log(2)) * math.sqrt(sx * sy)
    # from the Gaussian's solution a Moffat star converges in 6-13 evaluations; a Gaussian one
    # runs on towards beta -> infinity: stopped at 30, it keeps its Gaussian FWHM
    moffat = _least_squares(models.Moffat2D, xx, yy, cut, [gauss[0], gauss[1], gauss[2], fwhm, 3.0],
                            max_nfev=30)
    if moffat is not None and 0 < moffat[4] < MOFFAT_GAUSSIAN:
        fwhm = 2 * abs(moffat[3]) * math.sqrt(2 ** (1 / moffat[4]) - 1)
    return (fwhm, 1 - min(sx, sy) / max(sx, sy)) if math.isfinite(fwhm) else None


def _least_squares(model: Any, xx: np.ndarray, yy: np.ndarray, values: np.ndarray,
                   start: list[float], max_nfev: int = 100) -> np.ndarray | None:
    """The parameters of ``model`` (an astropy Fittable2DModel class) fitted to the pixels."""

    def residuals(p: np.ndarray) -> np.ndarray:
        return model.evaluate(xx, yy, *p) - values

    def jacobian(p: np.ndarray) -> np.ndarray:
        return np.stack(model.fit_deriv(xx, yy, *p), axis=1)

    with np.errstate(all="ignore"):
        fit = optimize.least_squares(residuals, start, jac=jacobian, method="lm", max_nfev=max_nfev)
    return fit.x if fit.success and np.isfinite(fit.x).all() else None


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

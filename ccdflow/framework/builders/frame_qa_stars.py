"""The star figures of frame QA: median FWHM and ellipticity of the brightest isolated stars.

Split from :mod:`ccdflow.framework.builders.frame_qa`, which finds the sources; see
docs/frame-qa.md for which stars and why. The candidates' centroids and widths are photutils'
``SourceCatalog`` moments (the same formulas on the candidates' boxes only: a catalog of the
whole segmentation, and importing photutils, cost more than the fits), the fits astropy's
``Gaussian2D`` and ``Moffat2D`` through their compiled twins
(:mod:`ccdflow.framework.numerics.profiles`) and MINPACK's Levenberg-Marquardt as scipy's
``least_squares(method="lm")`` runs it.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable
from typing import TYPE_CHECKING, NamedTuple

import numpy as np
from scipy import optimize

from ccdflow.framework import dq
from ccdflow.framework.numerics import frame_qa_kernels as kernels
from ccdflow.framework.numerics import profiles

if TYPE_CHECKING:
    from astropy.nddata import CCDData

#: Stars measured: peak at least 10 sky sigmas (fainter ones give noisy widths), the brightest
#: 30 at most (more moves the median little and costs ~0.3 ms each).
MIN_PEAK_SNR, MAX_STARS = 10.0, 30
#: A Moffat beta above this is a Gaussian star (the profiles differ by < 1 % in FWHM).
MOFFAT_GAUSSIAN = 20.0
#: A star near one of these bits has no true profile: saturated (and its bleed), no data.
UNUSABLE = dq.DTYPE(dq.SATURATED | dq.NO_DATA | dq.NON_FINITE)

#: A profile's residuals or Jacobian: (parameters, x, y, values) -> array.
Model = Callable[..., np.ndarray]


class DqBits:
    """A frame's DQ planes as :func:`ccdflow.framework.dq.of` reads them, without making its
    bits as a frame: ``flags`` and ``mask`` contiguous, or empty when the frame has none (or
    flags that do not match the mask), for the defects kernel and :meth:`unusable`."""

    def __init__(self, ccd: CCDData) -> None:
        mask = None if ccd.mask is None else np.asarray(ccd.mask)
        flags = None if mask is None or ccd.flags is None or np.shape(ccd.flags) != mask.shape else ccd.flags
        self.mask = np.empty((0, 0), bool) if mask is None else np.ascontiguousarray(mask, bool)
        self.flags = np.empty((0, 0), dq.DTYPE) if flags is None else np.ascontiguousarray(dq.bits(flags))

    def unusable(self, box: tuple[slice, slice]) -> bool:
        """Whether a pixel of ``box`` (its part in the frame) has an UNUSABLE bit (a masked pixel
        keeps its flags; one without flags has MASKED only, which is not one)."""
        rows, cols = (box[0].start, box[0].stop), (box[1].start, box[1].stop)
        return bool(self.flags.size) and kernels.any_flagged(self.flags, self.mask, rows, cols, UNUSABLE)


class Sources(NamedTuple):
    """The detected sources: ``labels`` (numbered as scipy.ndimage.label does, 0 none) and per
    label whether it is kept (at least the detection's pixels), its box (row, column start and
    stop), the peak of the frame minus the first level, its pixels and those with a positive
    UNCERT. The kept labels in raster order are photutils' consecutive ones."""

    labels: np.ndarray
    kept: np.ndarray
    box: np.ndarray
    peak: np.ndarray
    size: np.ndarray
    positive: np.ndarray

    def cutout(self, where: tuple[slice, slice]) -> np.ndarray:
        """The kept labels in ``where`` (a source too small to keep is 0, as in photutils)."""
        values = self.labels[where]
        return np.where(self.kept[values], values, 0)


def measure_stars(data: np.ndarray, sky: float, sources: Sources, defect: np.ndarray,
                  bits: DqBits, sky_noise: float) -> dict[str, float]:
    """Median FWHM and ellipticity (:func:`_fit`) of the brightest isolated, unsaturated stars
    with a clean core; empty when there is none. A masked pixel in a star's wings (a cosmic ray,
    a hot pixel) is left out of its fit: refusing every star with one would refuse most stars of
    a frame with 1 % masked pixels and a 25 x 25 pixel fit box."""
    candidates = _bright_unsaturated(sources, bits, MIN_PEAK_SNR * sky_noise)
    if not candidates:
        return {}
    sky32 = np.float32(sky)
    with np.errstate(divide="ignore", invalid="ignore"):  # a NaN width or centroid is refused
        peaks, xs, ys, widths = _moments(data, sky32, sources, defect, candidates)
    if not np.isfinite(widths).any():
        return {}
    width = float(np.nanmedian(widths))
    radius, core = int(np.clip(math.ceil(1.5 * width), 4, 25)), max(2, math.ceil(width))
    shapes: list[tuple[float, float]] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # leastsq's "maxfev reached": a failed fit
        for i in np.argsort(-peaks):
            label, x, y = candidates[i], xs[i], ys[i]
            box, centre = _box(data.shape, x, y, radius), _box(data.shape, x, y, core)
            if (box is None or centre is None or defect[centre].any() or bits.unusable(box)
                    or np.setdiff1d(sources.cutout(centre), (0, label)).size):
                continue  # at the edge, a masked core, saturation nearby, or a neighbour too close
            # masked pixels and a neighbour's pixels in the wings are left out of the fits
            good = ~defect[box] & np.isin(sources.cutout(box), (0, label))
            shape = _fit(data[box] - sky32, box, good, x, y)
            if shape is not None and 0.5 < shape[0] < 2 * radius:
                shapes.append(shape)
            if len(shapes) == MAX_STARS:
                break
    if not shapes:
        return {}
    fwhm, ellipticity = np.median(np.array(shapes), axis=0)
    return {"fwhm": float(fwhm), "ellipticity": float(ellipticity)}


def _bright_unsaturated(sources: Sources, bits: DqBits, min_peak: float) -> list[int]:
    """Labels of the 2 MAX_STARS brightest sources peaking above ``min_peak`` with no unusable
    (saturated, no-data) pixel in their box grown by 2 px: a field of saturated stars still
    yields its unsaturated ones. Ranked as photutils' consecutive labels were (the same ties)."""
    labels = np.flatnonzero(sources.kept)
    peaks = np.zeros(labels.size + 1, np.float32)
    peaks[1:] = sources.peak[labels]
    out: list[int] = []
    for rank in np.argsort(-peaks):
        if peaks[rank] < min_peak or len(out) == 2 * MAX_STARS:
            break
        y0, y1, x0, x1 = sources.box[labels[rank - 1]]
        if not bits.unusable((slice(y0 - 2, y1 + 2), slice(x0 - 2, x1 + 2))):
            out.append(int(labels[rank - 1]))
    return out


def _moments(data: np.ndarray, sky: np.float32, sources: Sources, defect: np.ndarray,
             candidates: list[int]) -> tuple[np.ndarray, ...]:
    """photutils SourceCatalog's ``max_value``, ``x_centroid``, ``y_centroid`` and ``fwhm`` of
    the candidates on ``data - sky`` (masked: ``defect``): image moments of the segment's
    non-negative pixels, the covariance widened by 1/12 px^2 until its determinant reaches
    1/144 (SourceExtractor's rule for thin sources)."""
    rows = [kernels.segment_moments(data, sky, sources.labels, defect, label, sources.box[label])
            for label in candidates]
    peaks, xs, ys, xx, xy, yy = (np.array(column, float) for column in zip(*rows, strict=True))
    covar = np.stack([xx, xy, xy, yy], axis=1).reshape(-1, 2, 2)
    det = np.linalg.det(covar)
    covar[det < 0] = np.nan
    small = np.flatnonzero(det < 1.0 / 144)
    while small.size:
        covar[small, 0, 0] += 1.0 / 12
        covar[small, 1, 1] += 1.0 / 12
        small = np.flatnonzero(np.linalg.det(covar) < 1.0 / 144)
    eig = np.full((len(candidates), 2), np.nan)
    finite = np.isfinite(covar).all(axis=(1, 2))
    if finite.any():
        eig[finite] = np.linalg.eigvalsh(covar[finite])
    eig[(eig < 0).any(axis=1)] = np.nan
    semimajor, semiminor = np.sqrt(eig[:, 1]), np.sqrt(eig[:, 0])  # eigvalsh: ascending
    widths = 2.0 * np.sqrt(np.log(2.0) * (semimajor ** 2 + semiminor ** 2))
    return peaks, xs, ys, widths


def _box(shape: tuple[int, ...], x: float, y: float, radius: int) -> tuple[slice, slice] | None:
    """The (2 radius + 1)^2 cutout around (x, y), or None when it leaves the frame."""
    if not (np.isfinite(x) and np.isfinite(y)):
        return None
    ix, iy = int(round(x)), int(round(y))
    if ix - radius < 0 or iy - radius < 0 or ix + radius >= shape[1] or iy + radius >= shape[0]:
        return None
    return slice(iy - radius, iy + radius + 1), slice(ix - radius, ix + radius + 1)


def _fit(cutout: np.ndarray, box: tuple[slice, slice], good: np.ndarray, x: float,
         y: float) -> tuple[float, float] | None:
    """(FWHM, ellipticity) of one star. The ellipticity 1 - b/a is an elliptical Gaussian's
    (astropy's ``Gaussian2D``: its axes follow the core, which a trail stretches); the FWHM a
    circular Moffat's (``Moffat2D``: a Gaussian fit reads a Moffat star 6-13 % wide), unless
    the Moffat runs to its Gaussian limit (beta -> infinity, where it never converges): the
    star is Gaussian and the Gaussian's FWHM is the one. None when a fit fails or wanders off
    the star."""
    cut = cutout[good].astype(float)
    yy, xx = (a[good].astype(float) for a in np.mgrid[box])
    gauss = _least_squares(profiles.gaussian_residual, profiles.gaussian_jacobian, xx, yy, cut,
                           [float(cut.max()), x, y, 1.5, 1.5, 0.0])
    if gauss is None or math.hypot(gauss[1] - x, gauss[2] - y) > 2.0:
        return None
    sx, sy = abs(gauss[3]), abs(gauss[4])
    if not min(sx, sy) > 0:
        return None
    fwhm = 2 * math.sqrt(2 * math.log(2)) * math.sqrt(sx * sy)
    # from the Gaussian's solution a Moffat star converges in 6-13 evaluations; a Gaussian one
    # runs on towards beta -> infinity: stopped at 30, it keeps its Gaussian FWHM
    moffat = _least_squares(profiles.moffat_residual, profiles.moffat_jacobian, xx, yy, cut,
                            [gauss[0], gauss[1], gauss[2], fwhm, 3.0], max_nfev=30)
    if moffat is not None and 0 < moffat[4] < MOFFAT_GAUSSIAN:
        fwhm = 2 * abs(moffat[3]) * math.sqrt(2 ** (1 / moffat[4]) - 1)
    return (fwhm, 1 - min(sx, sy) / max(sx, sy)) if math.isfinite(fwhm) else None


def _least_squares(residuals: Model, jacobian: Model, xx: np.ndarray, yy: np.ndarray, values: np.ndarray,
                   start: list[float], max_nfev: int = 100) -> np.ndarray | None:
    """The parameters minimising ``residuals`` (a :mod:`~ccdflow.framework.numerics.profiles`
    pair) from ``start``; None when the fit fails. MINPACK's lmder as
    ``least_squares(method="lm")`` calls it (tolerances 1e-8, step bound factor 100, scaled by
    the Jacobian's columns: scipy >= 1.16's default), through ``leastsq``, which hands it the
    functions as they are: least_squares' wrappers cost ~10 us an evaluation, most of a fit."""
    x, status = optimize.leastsq(residuals, np.array(start, float), args=(xx, yy, values),
                                 Dfun=jacobian, ftol=1e-8, xtol=1e-8, gtol=1e-8, maxfev=max_nfev,
                                 factor=100.0, diag=None)
    return x if status in (1, 2, 3, 4) and np.isfinite(x).all() else None

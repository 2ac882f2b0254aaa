"""Cosmic-ray detection on a single frame: L.A.Cosmic (van Dokkum 2001), by ccdflow's own engine
(:mod:`ccdflow.framework.numerics.lacosmic`, astroscrappy's masks bit for bit, several times
faster) or by astroscrappy itself (``engine``).

Mask only by default: the pixels stay as they are, so a later stack or photometry decides
what to do with them. ``clean: true`` writes astroscrappy's interpolated values instead.

The frame is reflected outwards by ``edge_pad`` pixels before detection and the result cropped:
astroscrappy's median filters copy their input into a border as wide as their half-width, so
near the edge the fine-structure image (med5 - med9(med5)) is 0 and every star core there
passes the object-limit test, while the Laplacian excess (s - med7(s)) is 0 in the outer
3 pixels, where no cosmic ray can be found.

Flagged pixels do not blind the detection: astroscrappy grows its ``inmask`` by a pixel (and
saturated stars by four), so a hit beside a bad pixel was never found. Pixels whose values
are not sky or signal (:data:`REPLACED`: bad pixels, saturated, non-finite, no calibration)
are instead replaced by the median of their good neighbours before detection, no ``inmask`` is
given, and they are never flagged as cosmic rays. See docs/steps/cosmicray.md.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from astropy.nddata import CCDData
from pydantic import Field

from ccdflow.framework import dq
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise, in_electrons


def edge_pad_needed(sepmed: bool = True, fsmode: str = "median", psfsize: int = 7) -> int:
    """Reflection width at which every pixel of the frame sees only genuinely filtered values.

    astroscrappy's median filters copy their input into a border of their half-width. A pixel's
    flag depends on the Laplacian excess s - med(s), s being divided by the median-filtered
    noise, and on the fine structure F = (f - med(f)) / noise; both are then grown twice by 3x3
    (2 px). The padding must hold the longest of these chains of half-widths:
    sepmed: s 3 + noise 3, F 2 + 4 (med5, med9); full 2-D median: 2 + 2, 1 + 3; convolve:
    F needs the PSF's half-size + noise 3 + med(f) (4 or 3).
    """
    med_s, med_f, fine = (3, 4, 2) if sepmed else (2, 3, 1)
    if fsmode == "convolve":
        fine = psfsize // 2 + med_s  # the convolution weights by 1 / noise**2
    return max(med_s + med_s, fine + med_f) + 2


#: DQ bits whose pixels hold no sky or signal value: replaced before detection, never flagged.
REPLACED = (dq.HOT | dq.LOW | dq.UNSTABLE | dq.SATURATED | dq.FLAT_LOW | dq.NON_FINITE | dq.NO_DATA
            | dq.MASKED)


def filled(values: np.ndarray, bad: np.ndarray, half: int = 2, rounds: int = 64) -> np.ndarray:
    """A float32 copy of ``values`` with the ``bad`` pixels replaced by the median of the good
    pixels of their (2 half + 1)^2 box, filled from the outside in (a wide bad region takes
    width / (2 half) rounds); what is left after ``rounds`` (no good pixel near) gets the median
    of all good pixels. Only the bad pixels are visited, so the cost follows their number."""
    out = np.array(values, dtype=np.float32)
    todo = np.asarray(bad, bool) | ~np.isfinite(out)
    if not todo.any():
        return out
    padded = np.pad(out, half, mode="constant", constant_values=np.nan)
    core = padded[half:-half, half:-half]  # a view: filling it fills ``padded``
    core[todo] = np.nan
    offsets = [(dy, dx) for dy in range(-half, half + 1) for dx in range(-half, half + 1)]
    ys, xs = np.nonzero(todo)
    for _ in range(rounds):
        if ys.size == 0:
            break
        window = np.stack([padded[ys + half + dy, xs + half + dx] for dy, dx in offsets], axis=1)
        with np.errstate(all="ignore"):
            known = np.asarray(np.isfinite(window).any(axis=1))
            median = np.nanmedian(np.where(known[:, None], window, 0), axis=1)
        core[ys[known], xs[known]] = median[known]  # after the medians: one round, one layer
        ys, xs = ys[~known], xs[~known]
    if ys.size:
        good = np.isfinite(core)
        core[ys, xs] = np.median(core[good]) if good.any() else 0.0
    return np.ascontiguousarray(core)


class CosmicRayParams(StepParams):
    sigclip: float = Field(
        4.5, gt=0, description="Detection limit: Laplacian-to-noise ratio (sigma) a cosmic-ray pixel "
        "exceeds.")
    sigfrac: float = Field(
        0.3, gt=0, description="Limit for pixels next to a detection, as a fraction of sigclip.")
    objlim: float = Field(
        8.0, gt=0, description="Laplacian to fine-structure contrast; raise it if star cores are hit "
        "(8: undersampled HST stars 36 % -> 14 % flagged, recall on EFOSC2 and simulated frames "
        "unchanged; 12 splits a real GMOS track; docs/steps/cosmicray.md).",
    )
    niter: int = Field(4, ge=1, le=20, description="L.A.Cosmic iterations (cost grows with each).")
    sepmed: bool = Field(True, description="Separable median filter (faster, nearly identical).")
    fsmode: Literal["median", "convolve"] = Field(
        "median", description="Fine-structure image: median filter, or convolution with the PSF."
    )
    psfmodel: Literal["gauss", "gaussx", "gaussy", "moffat"] = Field(
        "gauss", description="PSF model for fsmode=convolve."
    )
    psffwhm: float = Field(2.5, gt=0, description="PSF FWHM in pixels for fsmode=convolve.")
    psfsize: int = Field(7, ge=3, description="PSF kernel size in pixels (odd) for fsmode=convolve.")
    psfbeta: float = Field(4.765, gt=0, description="Moffat power-law index (beta) for psfmodel=moffat.")
    cleantype: Literal["median", "medmask", "meanmask", "idw"] = Field(
        "meanmask", description="Interpolation used for cleaned values (and between iterations)."
    )
    satlevel: float | None = Field(
        None, description="Saturation in the frame's current unit; None: none when the saturation "
        "step ran (its pixels are replaced), else the instrument's raw saturation level times the "
        "gain if in electrons.",
    )
    use_variance: bool = Field(
        True, description="Give astroscrappy the uncertainty plane squared as its noise model (it "
        "follows the flat division); false, or no plane: astroscrappy's data + read noise^2.",
    )
    engine: Literal["ccdflow", "astroscrappy"] = Field(
        "ccdflow", description="L.A.Cosmic implementation: ccdflow's (numba, both cores; the same "
        "masks and cleaned values as astroscrappy 1.3, bit for bit, several times faster) or "
        "astroscrappy itself. fsmode convolve and cleantype other than meanmask always run "
        "astroscrappy (CF_CRENG says which ran).",
    )
    clean: bool = Field(False, description="Replace cosmic-ray pixels with astroscrappy's cleaned values.")
    edge_pad: int | None = Field(
        None, ge=0, description="Pixels of reflection around the frame before detection; None: as "
        "many as the filters reach (8 with the defaults); 0: astroscrappy's own edges (ccdproc's "
        "masks exactly, but star cores near the edge flagged).",
    )


def reflected(array: np.ndarray, pad: int, dtype: type) -> np.ndarray:
    """``array`` as ``dtype``, mirrored about its edge pixels by ``pad`` (no copy when 0).

    Mirroring about the edge pixel (numpy "reflect", the edge not repeated) keeps a one-pixel
    cosmic ray on the edge one pixel wide, and a star's profile smooth across the edge.
    """
    array = np.asarray(array, dtype=dtype)
    return np.ascontiguousarray(array) if pad == 0 else np.pad(array, pad, mode="reflect")


def off_saturated_edges(crmask: np.ndarray, saturated: np.ndarray | None) -> np.ndarray:
    """``crmask`` without its groups (8-connected) that touch a saturated pixel: with the
    saturated core replaced, the steep edge of a saturated star looks like a hit, and a hit
    touching the core cannot be told from it (astroscrappy blinds 4 px around instead)."""
    if saturated is None or not saturated.any() or not crmask.any():
        return crmask
    from scipy import ndimage

    labels, _ = ndimage.label(crmask, np.ones((3, 3), bool))
    touching = np.unique(labels[ndimage.binary_dilation(saturated, np.ones((3, 3), bool)) & crmask])
    return crmask & ~np.isin(labels, touching)


def detect_cosmic_rays(
    data: np.ndarray, mask: np.ndarray | None, *, gain: float, read_noise: float, satlevel: float,
    variance: np.ndarray | None = None, edge_pad: int | None = None,
    saturated: np.ndarray | None = None, engine: str = "ccdflow", **options,
) -> tuple[np.ndarray, np.ndarray]:
    """(cosmic-ray mask, cleaned data) from astroscrappy on the frame reflected by ``edge_pad``.

    ``satlevel`` is in electrons as astroscrappy compares it to ``data * gain``. ``mask``
    marks pixels whose values are not sky or signal: they are replaced by their neighbours'
    median (data and variance, :func:`filled`) instead of going to astroscrappy's ``inmask``,
    which would grow them and hide hits beside them, and they are never in the mask returned,
    which holds only the new detections; groups touching a ``saturated`` pixel are dropped
    (:func:`off_saturated_edges`). ``edge_pad`` None: ``edge_pad_needed`` for the filters
    chosen in ``options``. ``engine``: :func:`lacosmic_engine` (the name of one that can run
    these options).
    """

    if edge_pad is None:
        edge_pad = edge_pad_needed(options.get("sepmed", True), options.get("fsmode", "median"),
                                   options.get("psfsize", 7))
    bad = ~np.isfinite(data) if mask is None else (np.asarray(mask, bool) | ~np.isfinite(data))
    if variance is not None:
        bad |= ~np.isfinite(variance)
        variance = filled(variance, bad)
    crmask, cleaned = lacosmic_engine(engine, options)(
        reflected(filled(data, bad), edge_pad, np.float32),
        invar=None if variance is None else reflected(variance, edge_pad, np.float32),
        gain=gain, readnoise=read_noise, satlevel=satlevel, **options,
    )
    if edge_pad:
        inside = (slice(edge_pad, -edge_pad),) * 2
        crmask, cleaned = crmask[inside], cleaned[inside]
    return np.ascontiguousarray(off_saturated_edges(crmask & ~bad, saturated)), cleaned


def usable_engine(engine: str, options: dict) -> str:
    """``engine``, or astroscrappy when ccdflow's engine lacks one of ``options`` (fsmode
    convolve, cleantypes other than meanmask)."""
    from ccdflow.framework.numerics.lacosmic import supports

    return engine if engine != "ccdflow" or supports(**options) else "astroscrappy"


def lacosmic_engine(engine: str, options: dict):
    """The ``detect_cosmics`` function of ``engine`` (imported only when the step runs: each
    import costs ~0.1 s)."""
    if usable_engine(engine, options) == "ccdflow":
        from ccdflow.framework.numerics import lacosmic

        return lacosmic.detect_cosmics
    import astroscrappy

    return astroscrappy.detect_cosmics


class CosmicRayDetector(Step[CosmicRayParams]):
    """Runs on one frame; after the gain step the data are electrons, so gain 1 is used."""

    name = "cosmicray"
    Params = CosmicRayParams
    description = "Mask cosmic rays with L.A.Cosmic (ccdflow's or astroscrappy's); optionally clean them."

    @classmethod
    def status_keyword(cls) -> str:
        return "CF_CRAY"

    def run(self, ccd: CCDData, params: CosmicRayParams, calibrations, context: StepContext) -> CCDData:
        what = "cosmic-ray detection"
        header = header_of(ccd)
        electrons = in_electrons(ccd)
        read_noise = detector_read_noise(context, what, header)
        satlevel = params.satlevel
        # the gain is needed for ADU data, and for electrons only to convert a raw saturation
        # level: then the gain the gain step applied (CF_GAINV) is the one that fits the pixels
        applied = ccd.header.get("CF_GAINV") if electrons else None
        physical_gain = 1.0
        if applied is not None:
            physical_gain = float(applied)
        elif not electrons or satlevel is None:
            physical_gain = detector_gain(context, what, header)
        gain = 1.0 if electrons else physical_gain
        if satlevel is None and "CF_SATLV" in ccd.header:
            satlevel = float("inf")  # flagged SATURATED by the saturation step: replaced below
        elif satlevel is None:
            satlevel = context.instrument.saturation * physical_gain  # e-; an upper bound after bias
        elif not electrons:
            satlevel *= gain
        variance = None
        if params.use_variance and ccd.uncertainty is not None:
            variance = np.square(np.asarray(ccd.uncertainty.array, np.float32))
        options = params.model_dump(exclude={"skip", "satlevel", "use_variance", "clean", "engine"})
        engine = usable_engine(params.engine, options)
        bits = dq.of(ccd)
        replaced = None if bits is None else (bits & REPLACED) != 0
        crmask, cleaned = detect_cosmic_rays(
            ccd.data, replaced, gain=gain, read_noise=read_noise, satlevel=satlevel,
            variance=variance, saturated=None if bits is None else (bits & dq.SATURATED) != 0,
            engine=engine, **options,
        )
        header["CF_NCR"] = (int(crmask.sum()), "pixels flagged as cosmic rays")
        header["CF_CRENG"] = (engine, "L.A.Cosmic implementation that ran")
        header["CF_CRGN"] = (gain, "gain given to astroscrappy (1: data in e-)")
        header["CF_CRRN"] = (read_noise, "read noise given to astroscrappy (e-)")
        header["CF_CRCLN"] = (params.clean, "cosmic-ray pixels replaced by cleaned values")
        header["CF_CRVAR"] = (variance is not None, "noise: UNCERT (T) or data (F)")
        header["CF_CRREP"] = (0 if replaced is None else int(replaced.sum()),
                              "flagged pixels filled before detection")
        mask, flags = dq.flagged(ccd, crmask, dq.COSMIC_RAY)
        # only the flagged pixels: astroscrappy's x*gain/gain round trip moves the others by 1 ulp
        data = np.where(crmask, cleaned, ccd.data).astype(np.float32) if params.clean else ccd.data
        return CCDData(data, unit=ccd.unit, header=header, mask=mask, flags=flags,
                       uncertainty=ccd.uncertainty)

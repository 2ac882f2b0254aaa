"""Overscan subtraction, amplifier by amplifier, after a check that each overscan region looks
like one (a section in the wrong place would otherwise subtract light or structure silently)."""

from __future__ import annotations

import warnings
from typing import Literal

import numpy as np
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.stats import sigma_clipped_stats
from pydantic import Field

from ccdflow.framework.engine.errors import IlluminatedOverscanError, NoWorkError, UnprocessableInputError
from ccdflow.framework.engine.step import Step, StepContext, StepParams, header_of
from ccdflow.framework.headers.geometry import AmplifierRegions, amplifier_regions
from ccdflow.plugins.steps.noise import detector_gain, detector_read_noise
from ccdflow.plugins.steps.overscan_noise import level_variance, spread

#: Frame types that hold no light: their overscan is compared with the data area itself.
DARK_TYPES = ("bias", "dark")
#: Noise figures are floored here (ADU): raw counts are integers, and a quantised or simulated
#: noiseless frame must not make every ratio infinite.
NOISE_FLOOR = 1.0
#: Most data-area pixels used for the figures (rows are subsampled beyond): a 4k x 4k frame
#: gives the same level and noise to a fraction of an ADU from a few hundred rows.
_MAX_PIXELS = 250_000


class OverscanParams(StepParams):
    method: Literal["median", "mean", "clipped_mean", "line_median", "poly"] = Field(
        "line_median",
        description="Level estimate: one number (median, mean, clipped_mean) or one value per "
        "line along the readout direction (line_median, or a poly fit of it).",
    )
    poly_order: int = Field(
        3, ge=0, le=10, description="Order of the polynomial fitted along the readout direction "
        "(method poly).")
    sigma: float = Field(
        3.0, gt=0, description="Clipping threshold in standard deviations (method clipped_mean).")
    check: bool = Field(
        True, description="Refuse an overscan region that does not look like one "
        "(IlluminatedOverscanError naming the section, where it came from and the figures).")
    max_noise_ratio: float = Field(
        3.0, gt=1, description="Largest overscan pixel noise, in units of the reference noise: "
        "the read noise in ADU on exposed frames (when the header or instrument gives read "
        "noise and gain), the data area's own noise on bias and dark. A real overscan is read "
        "noise: EFOSC2's prescan is 10 ADU against a nominal 7 ADU in every frame type (1.5), "
        "and the ~90 ADU its 37k ADU flats leak into it add little. Light adds photon noise: "
        "3 means about 8 read-noise-squared ADU of light (gain 1).")
    max_level_offset: float = Field(
        10.0, gt=0, description="Largest overscan-to-data-area level difference, in units of "
        "the data area's pixel noise: either way on a bias (EFOSC2: 216 vs 219 ADU at 10 ADU "
        "noise, 0.3), and overscan above the data on any frame (a real overscan is never much "
        "brighter than the exposed pixels; a section on illuminated columns of a long-slit frame "
        "is). Raise it for a camera whose bias legitimately differs more.")


def overscan_model(strip: np.ndarray, method: str, poly_order: int = 3, sigma: float = 3.0) -> np.ndarray:
    """Overscan level per line of ``strip`` (lines along axis 0), or a 0-d value.

    The strip is oriented so axis 0 runs along the readout direction: for a column
    overscan at the side of the frame that is one value per row.
    """
    if method == "median":
        return np.asarray(np.median(strip), dtype=np.float32)
    if method == "mean":
        return np.asarray(np.mean(strip), dtype=np.float32)
    if method == "clipped_mean":
        return np.asarray(sigma_clipped_stats(strip, sigma=sigma)[0], dtype=np.float32)
    lines = np.median(strip, axis=1)
    if method == "line_median":
        return lines.astype(np.float32)
    x = np.linspace(-1.0, 1.0, lines.size)
    good = np.isfinite(lines)  # a line of NaN overscan pixels (see finite_model) has no level
    if good.sum() < 1:
        return lines.astype(np.float32)
    fit = np.polynomial.Polynomial.fit(x[good], lines[good], deg=min(poly_order, int(good.sum()) - 1))
    return fit(x).astype(np.float32)


def finite_model(strip: np.ndarray, method: str, **options) -> np.ndarray:
    """:func:`overscan_model` leaving out NaN/inf overscan pixels (``read_ccd`` turns masked raw
    pixels into NaN); one NaN used to make the level, and a header card, NaN. The plain model is
    tried first: the usual strip is all finite, and NaN-aware statistics are several times slower."""
    level = overscan_model(strip, method, **options)
    if np.isfinite(level).all():
        return level
    good = np.isfinite(strip)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # lines with no finite pixel stay NaN
        if method in ("median", "mean", "clipped_mean"):
            return overscan_model(strip[good], method, **options) if good.any() else level
        lines = np.nanmedian(np.where(good, strip, np.nan), axis=1)
    return overscan_model(lines[:, None], method, **options)


def subtract_overscan(
    data: np.ndarray, overscan: tuple[slice, slice], target: tuple[slice, slice],
    out: np.ndarray | None = None, **options
) -> float:
    """Subtract the overscan model from ``target``, in place or into ``out`` (one pass instead of
    a copy and a subtraction); returns the mean level removed."""
    strip = data[overscan]
    by_rows = strip.shape[0] >= strip.shape[1]  # side overscan: one value per row
    oriented = strip if by_rows else strip.T
    level = finite_model(oriented, **options)
    if not np.isfinite(level).any():
        raise UnprocessableInputError("the overscan region holds no finite pixel; no level to subtract")
    model = spread(level, by_rows, overscan, target, data.shape)
    if out is None:
        data[target] -= model
    else:
        np.subtract(data[target], model, out=out[target])
    return float(np.nanmean(level))  # lines without a level leave NaN rows (masked downstream)


def overscan_variance(data: np.ndarray, overscan: tuple[slice, slice], target: tuple[slice, slice],
                      method: str, poly_order: int = 3) -> np.ndarray:
    """Variance (ADU^2) that subtracting the overscan model adds to each pixel of ``target``
    (broadcastable to it): see :mod:`ccdflow.plugins.steps.overscan_noise`."""
    strip = data[overscan]
    by_rows = strip.shape[0] >= strip.shape[1]
    variance = level_variance(strip if by_rows else strip.T, method, poly_order)
    return spread(variance, by_rows, overscan, target, data.shape)


def pixel_noise(region: np.ndarray) -> float:
    """Robust pixel-to-pixel noise (ADU): 1.4826 x the MAD of neighbour differences along the
    longer axis, over sqrt(2). Differences leave out the level, gradients and any structure
    wider than a pixel, so what remains is read noise, plus photon noise where light falls."""
    axis = 0 if region.shape[0] >= region.shape[1] else 1
    if region.shape[axis] < 2:
        return NOISE_FLOOR
    diff = np.diff(region, axis=axis)
    diff = diff[np.isfinite(diff)]
    if diff.size == 0:
        return NOISE_FLOOR
    mad = float(np.median(np.abs(diff - np.median(diff))))
    return max(1.4826 * mad / np.sqrt(2.0), NOISE_FLOOR)


def _level(region: np.ndarray) -> float:
    finite = region[np.isfinite(region)]
    return float(np.median(finite)) if finite.size else float("nan")


def read_noise_adu(context: StepContext) -> float | None:
    """The frame's read noise in ADU when its read noise and gain are known, else None (the
    check then falls back to what the frame itself shows)."""
    try:
        rn = detector_read_noise(context, "the overscan check")
        gain = detector_gain(context, "the overscan check")
    except UnprocessableInputError:
        return None
    return rn / gain if rn > 0 else None


def check_overscan(data: np.ndarray, amp: AmplifierRegions, frame_type: str,
                   read_noise: float | None, params: OverscanParams, path: str | None) -> None:
    """Refuse an overscan that does not look like one (see OverscanParams for the thresholds and
    their reasons): noise far above the reference noise, a level far from the data's on a frame
    without light, or far above it on any frame."""
    assert amp.overscan is not None
    strip = np.asarray(data[amp.overscan], np.float32)
    area = np.asarray(data[amp.trim])
    step = max(1, area.size // _MAX_PIXELS)
    area = np.asarray(area[::step], np.float32)
    os_level, os_noise = _level(strip), pixel_noise(strip)
    data_level, data_noise = _level(area), pixel_noise(area)
    dark = frame_type in DARK_TYPES
    reference, ref_name = (data_noise, "the data area's noise") if dark else (read_noise, "the read noise")
    offset = (os_level - data_level) / data_noise
    problems = []
    if reference is not None and os_noise > params.max_noise_ratio * max(reference, NOISE_FLOOR):
        problems.append(f"its noise {os_noise:.1f} ADU is {os_noise / max(reference, NOISE_FLOOR):.1f} "
                        f"times {ref_name} {reference:.1f} ADU (limit {params.max_noise_ratio:g}, "
                        "steps.overscan.max_noise_ratio)")
    if offset > params.max_level_offset or (frame_type == "bias" and -offset > params.max_level_offset):
        problems.append(f"its level {os_level:.1f} ADU is {abs(offset):.1f} noise sigmas "
                        f"{'above' if offset > 0 else 'below'} the data area's {data_level:.1f} ADU "
                        f"(noise {data_noise:.1f} ADU; limit {params.max_level_offset:g}, "
                        "steps.overscan.max_level_offset)")
    if problems:
        what = "does not look like an overscan of a frame without light" if dark else "holds light"
        raise IlluminatedOverscanError(
            f"amplifier {amp.name}: the overscan {amp.overscan_text} of this {frame_type} frame "
            f"{what}: " + "; ".join(problems), path=path, keyword=amp.overscan_source,
            value=amp.overscan_text, expected="an unilluminated overscan or prescan: correct the "
            "section (geometry amplifiers' overscan, in raw or detector pixels), or raise the "
            "limit named for a camera whose overscan is legitimately so")


class OverscanSubtractor(Step[OverscanParams]):
    name = "overscan"
    Params = OverscanParams
    description = "Subtract the overscan level of each amplifier."

    def run(self, ccd: CCDData, params: OverscanParams, calibrations, context: StepContext) -> CCDData:
        amps = amplifier_regions(context.instrument, ccd.header, ccd.shape, context.meta.path,
                                 context.meta)
        if all(a.overscan is None for a in amps):
            raise NoWorkError("no overscan section for any amplifier")
        if params.check:
            noise = read_noise_adu(context) if context.meta.frame_type not in DARK_TYPES else None
            for amp in amps:
                if amp.overscan is not None:
                    check_overscan(ccd.data, amp, context.meta.frame_type, noise, params, context.meta.path)
        whole = (slice(0, ccd.shape[0]), slice(0, ccd.shape[1]))
        # One amplifier of float32: the frame minus its model written straight into a new
        # array. Several: a copy, then each amplifier in place. The input frame is left as it is.
        one_pass = len(amps) == 1 and ccd.data.dtype == np.float32
        data = np.empty(ccd.shape, np.float32) if one_pass else np.array(ccd.data, np.float32)
        source, into = (ccd.data, data) if one_pass else (data, None)
        out = CCDData(data, unit=ccd.unit, header=header_of(ccd), mask=ccd.mask,
                      uncertainty=ccd.uncertainty, wcs=ccd.wcs)
        # the level subtracted is an estimate: its variance joins the frame's noise model when
        # the recipe has one (a master's inputs have none: the combine measures their scatter)
        variance = np.zeros(ccd.shape, np.float32) if models_noise(context) else None
        for amp in amps:
            if amp.overscan is None:
                continue
            target = whole if len(amps) == 1 else amp.trim
            added = overscan_variance(source, amp.overscan, target, params.method, params.poly_order)
            level = subtract_overscan(
                source, amp.overscan, target, into,
                method=params.method, poly_order=params.poly_order, sigma=params.sigma,
            )
            out.header[f"CF_OS{amp.name[:4]}"] = (round(level, 3), f"mean overscan {amp.overscan_text}")
            out.header[f"CF_ON{amp.name[:4]}"] = (float(f"{np.nanmean(added):.4g}"),
                                                  "overscan level variance (ADU2), per line")
            if variance is not None:
                variance[target] += np.nan_to_num(added).astype(np.float32)
        if variance is not None:
            carried = None if ccd.uncertainty is None else np.asarray(ccd.uncertainty.array, np.float32)
            std = np.sqrt(variance if carried is None else variance + carried**2)
            out.uncertainty = StdDevUncertainty(std, copy=False)
        return out


def models_noise(context: StepContext) -> bool:
    """Whether the frame's recipe builds an uncertainty plane (has the uncertainty step)."""
    recipe = context.instrument.recipe_for(context.meta.frame_type) or []
    return any(entry.step == "uncertainty" for entry in recipe)

"""Bad-pixel masks from master calibrations: hot pixels from a dark, dead or low pixels from a
flat, unstable pixels from the frame-to-frame scatter of a stack.

The mask is an integer image whose bits say why a pixel is bad, so a user can keep the hot
pixels of a short exposure and still drop the dead ones:

- bit value 1 (``HOT``): dark rate above its local background (a box median, so amplifier glow
  and gradients are not hot pixels) by ``hot_sigma`` times the local noise, or above
  ``hot_rate`` ADU/s;
- bit value 2 (``LOW``): master flat below ``low_threshold`` of its local (background) level;
- bit value 4 (``UNSTABLE``): temporal scatter far above what the pixel's own level predicts.

Bad columns show up as hot or low, so they need no bit of their own (the simulator's truth
uses 4 for them; compare the hot and low bits with it). A pixel may carry several bits.
A master of fewer than ``min_frames`` frames is refused (:class:`TooFewFramesError`): a
1-frame dark keeps its cosmic rays, which would become hot pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.stats import mad_std

from ccdflow import __version__
from ccdflow.framework.calibrations.bpm import BIT_NAMES, HOT, LOW, UNSTABLE
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.framework.io.fitswrite import atomic_write
from ccdflow.framework.io.provenance import card_text, stamp_calibration

MIN_UNSTABLE_FRAMES = 6
COUNT_CARDS = {HOT: "CF_NHOT", LOW: "CF_NLOW", UNSTABLE: "CF_NUNST"}
#: Cards a BPM copies from its source master: what the caldb matches on.
_SETUP_CARDS = tuple(c.keyword for c in (*cards.SETUP, cards.DATE, cards.TFIRS, cards.TLAST, cards.TEMP,
                                         cards.TSPRD))
_MUST_AGREE = tuple(c.keyword for c in cards.SETUP)


class TooFewFramesError(UnprocessableInputError):
    """A master combined from fewer frames than a bad-pixel mask needs (``min_frames``)."""


@dataclass(frozen=True)
class BpmThresholds:
    """Detection thresholds, recorded in the BPM's header."""

    hot_sigma: float = 10.0  # local noise sigmas above the local dark rate
    hot_rate: float | None = None  # absolute ADU/s; a pixel above either is hot
    low_threshold: float = 0.5  # of the flat's local level
    background_box: int = 32  # pixels: the box of the local level (dark rate and flat)
    unstable_factor: float = 5.0  # temporal std over the std predicted from the pixel's level
    min_frames: int = 3  # frames each master must combine (NCOMBINE)


def local_background(image: np.ndarray, good: np.ndarray, box: int) -> tuple[np.ndarray, np.ndarray]:
    """(level, noise) per pixel: box medians and sigma-clipped box std (photutils Background2D,
    3x3-median filtered between boxes), so slow structure (glow, vignetting) is background."""
    from photutils.background import Background2D, MedianBackground, StdBackgroundRMS

    box = max(4, min(box, *image.shape))
    bkg = Background2D(image, box, mask=~good, filter_size=3, bkg_estimator=MedianBackground(),
                       bkg_rms_estimator=StdBackgroundRMS())
    return bkg.background, bkg.background_rms


#: Side of the median window a pixel's dark rate is compared with: it follows an amplifier glow
#: that falls by e every 8-20 pixels (a 32 px background box did not: 0.9-1.6 % of good pixels
#: flagged in such a corner), and neither a hot pixel nor a hot column (1 of its 5 columns)
#: moves it.
HOT_WINDOW = 5
#: Median of a squared standard normal: median(r^2) / this is an unbiased variance.
_MEDIAN_CHI2_1 = 0.4549364


def hot_pixels(rate: np.ndarray, good: np.ndarray, nsigma: float, abs_rate: float | None,
               box: int = 32) -> np.ndarray:
    """Pixels whose dark rate is more than ``nsigma`` noise above the median of its
    HOT_WINDOW x HOT_WINDOW neighbourhood (or above ``abs_rate``), the noise growing with that
    local level as a photon-transfer line fitted over the frame (var = a + b * level: a glow's
    shot noise is expected, not hot). Against the global median amplifier glow was flagged
    hot (1.9 % of good pixels in issue 14's glow corner). ``box`` is not used for hot pixels
    (kept for the thresholds' record; the flat's low pixels use it)."""
    from scipy import ndimage

    values = rate[good]
    filled = np.where(good, rate, np.float32(np.median(values))).astype(np.float32)
    level = ndimage.median_filter(filled, size=HOT_WINDOW, mode="nearest")
    excess = rate - level
    sample = good & np.isfinite(excess)
    slope, offset = _variance_model(level[sample], excess[sample].astype(np.float64) ** 2 / _MEDIAN_CHI2_1)
    floor = (0.1 * float(mad_std(values))) ** 2 or np.finfo(np.float32).tiny  # identical values
    noise = np.sqrt(np.maximum(offset + slope * level, floor))
    with np.errstate(invalid="ignore"):
        hot = excess > nsigma * noise
    if abs_rate is not None:
        hot |= rate > abs_rate
    return hot & good


def low_pixels(flat: np.ndarray, good: np.ndarray, threshold: float, box: int) -> np.ndarray:
    """Pixels below ``threshold`` of the flat's local level (vignetting and dust are not defects)."""
    background, _ = local_background(flat, good, box)
    with np.errstate(invalid="ignore", divide="ignore"):
        return good & (flat < threshold * background)


def unstable_pixels(frames: Sequence[np.ndarray], masks: Sequence[np.ndarray | None] | None = None,
                    scales: Sequence[float] | None = None, factor: float = 5.0,
                    band_rows: int = 256) -> tuple[np.ndarray, dict[str, float]]:
    """Pixels whose frame-to-frame scatter is ``factor`` times what their level predicts.

    Per pixel the lowest and highest values are dropped (a cosmic ray hits one frame), then
    mean and std are taken over the rest. The noise a level should have comes from a robust
    straight-line fit of variance against mean over all pixels (a photon-transfer curve), so a
    hot pixel's larger shot noise is expected and only erratic pixels stand out. Works in row
    bands, so memmapped stacks stay on disk.
    """
    n = len(frames)
    if n < MIN_UNSTABLE_FRAMES:  # 4 values left after trimming: fewer make the std too noisy
        raise UnprocessableInputError(
            f"the unstable-pixel test needs at least {MIN_UNSTABLE_FRAMES} frames, got {n}")
    shape = frames[0].shape
    scale = np.ones(n, np.float32) if scales is None else np.asarray(scales, np.float32)
    mean, std = np.empty(shape, np.float32), np.empty(shape, np.float32)
    for r0 in range(0, shape[0], band_rows):
        band = slice(r0, min(shape[0], r0 + band_rows))
        stack = np.stack([np.asarray(f[band], np.float32) for f in frames]) * scale[:, None, None]
        if masks is not None:
            for i, m in enumerate(masks):
                if m is not None:
                    stack[i][np.asarray(m[band], bool)] = np.nan
        stack.sort(axis=0)  # NaN sorts last: drop the lowest and the highest finite value
        count = np.sum(np.isfinite(stack), axis=0)
        rows = np.arange(stack.shape[1])[:, None]
        cols = np.arange(stack.shape[2])[None, :]
        stack[np.maximum(count - 1, 0), rows, cols] = np.nan
        with np.errstate(invalid="ignore"), np.errstate(all="ignore"):
            inner = stack[1:]
            mean[band] = np.nanmean(inner, axis=0)
            std[band] = np.nanstd(inner, axis=0, ddof=1)
        std[band][count < 4] = np.nan
    ok = np.isfinite(std) & np.isfinite(mean)
    slope, offset = _variance_model(mean[ok], std[ok] ** 2)
    with np.errstate(invalid="ignore"):
        predicted = np.sqrt(np.maximum(offset + slope * mean, 0))
        floor = float(np.median(std[ok]))  # guards pixels whose model variance is ~0
        unstable = ok & (std > factor * np.maximum(predicted, 0.25 * floor))
    return unstable, {"var_slope": slope, "var_offset": offset, "median_std": floor}


def _variance_model(mean: np.ndarray, var: np.ndarray, bins: int = 20) -> tuple[float, float]:
    """Robust line var = offset + slope * mean: medians of the variance in quantile bins of the
    mean, fitted; one level only (e.g. a bias stack) gives a flat line."""
    edges = np.unique(np.quantile(mean, np.linspace(0.01, 0.99, bins + 1)))
    if edges.size < 3:
        return 0.0, float(np.median(var))
    which = np.digitize(mean, edges)
    x = [np.median(mean[which == k]) for k in range(1, edges.size) if np.any(which == k)]
    y = [np.median(var[which == k]) for k in range(1, edges.size) if np.any(which == k)]
    slope, offset = np.polyfit(x, y, 1)
    return max(float(slope), 0.0), float(offset)


def build_bpm(
    dark: fits.Header | None = None, dark_data: np.ndarray | None = None,
    flat: fits.Header | None = None, flat_data: np.ndarray | None = None,
    *, dark_mask: np.ndarray | None = None, flat_mask: np.ndarray | None = None,
    dark_path: str | Path | None = None, flat_path: str | Path | None = None,
    stack: tuple[Sequence[np.ndarray], Sequence[np.ndarray | None], Sequence[float] | None] | None = None,
    stack_paths: Sequence[str] = (), thresholds: BpmThresholds = BpmThresholds(),
) -> tuple[np.ndarray, fits.Header]:
    """The bit mask (uint8) and its header from a master dark and/or flat (headers + pixels),
    plus optionally a preprocessed stack for the unstable test."""
    sources = [(h, p) for h, p in ((dark, dark_path), (flat, flat_path)) if h is not None]
    if not sources:
        raise UnprocessableInputError("a bad-pixel mask needs a master dark, a master flat or both")
    _check_sources(sources)
    for h, p in sources:
        _enough_frames(h, p, thresholds.min_frames)
    first, first_data = ("dark", dark_data) if dark is not None else ("flat", flat_data)
    shape = _pixels(first, first_data).shape
    bpm = np.zeros(shape, np.uint8)
    header = fits.Header()
    if dark is not None:
        _expect(dark, "dark", dark_path)
        exptime = float(dark.get(cards.EXPT.keyword, 0.0))
        if exptime <= 0:
            raise UnprocessableInputError("master dark has no exposure time", path=str(dark_path),
                                          keyword=cards.EXPT.keyword, value=cards.EXPT.get(dark),
                                          expected="> 0 s")
        dark_px = _pixels("dark", dark_data)
        good = _good(dark_px, dark_mask)
        bpm[hot_pixels(dark_px / np.float32(exptime), good, thresholds.hot_sigma,
                       thresholds.hot_rate, thresholds.background_box)] |= HOT
    if flat is not None:
        _expect(flat, "flat", flat_path)
        flat_px = _pixels("flat", flat_data)
        if flat_px.shape != shape:
            raise UnprocessableInputError(f"master flat shape {flat_px.shape} differs from the "
                                          f"dark's {shape}", path=str(flat_path))
        bpm[low_pixels(flat_px, _good(flat_px, flat_mask), thresholds.low_threshold,
                       thresholds.background_box)] |= LOW
    if stack is not None:
        frames, masks, scales = stack
        if frames[0].shape != shape:
            raise UnprocessableInputError(f"stack frames are {frames[0].shape}, masters {shape}")
        unstable, model = unstable_pixels(frames, masks, scales, thresholds.unstable_factor)
        bpm[unstable] |= UNSTABLE
        header["CF_VARSL"] = (round(model["var_slope"], 6), "stack variance per unit level")
        header["CF_VAROF"] = (round(model["var_offset"], 4), "stack variance at level 0")
    _bpm_header(header, sources[0][0], bpm, thresholds, dark_path, flat_path, stack_paths)
    return bpm, header


def _pixels(kind: str, data: np.ndarray | None) -> np.ndarray:
    """A master's pixels, which must come with its header."""
    if data is None:
        raise ValueError(f"build_bpm: the master {kind}'s header came without its pixels ({kind}_data)")
    return data


def _enough_frames(header: fits.Header, path: object, need: int) -> None:
    """Refuse a master of fewer than ``need`` frames (NCOMBINE): its noise and cosmic rays
    would become bad pixels. A foreign master without NCOMBINE is refused too."""
    n = header.get("NCOMBINE")
    if not isinstance(n, int) or n < need:
        raise TooFewFramesError(
            f"a bad-pixel mask needs masters of at least {need} frames (min_frames)", path=str(path),
            keyword="NCOMBINE", value=n, expected=f">= {need}")


def _good(data: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    good = np.isfinite(data)
    return good if mask is None else good & ~np.asarray(mask, bool)


def _expect(header: fits.Header, kind: str, path: object) -> None:
    found = cards.MTYPE.get(header)
    if found != kind:
        raise UnprocessableInputError(f"not a master {kind}", path=str(path), keyword=cards.MTYPE.keyword,
                                      value=found, expected=f"'{kind}'")


def _check_sources(sources: Sequence[tuple[fits.Header, object]]) -> None:
    for key in _MUST_AGREE:
        values = {str(h.get(key)): str(p) for h, p in sources}
        if len(values) > 1:
            detail = "; ".join(f"{v} in {p}" for v, p in values.items())
            raise UnprocessableInputError(f"dark and flat masters disagree on {key}: {detail}")


def _bpm_header(header: fits.Header, source: fits.Header, bpm: np.ndarray, t: BpmThresholds,
                dark_path: str | Path | None, flat_path: str | Path | None,
                stack_paths: Sequence[str]) -> None:
    header["IMAGETYP"] = ("BPM", "ccdflow bad-pixel mask")
    cards.MTYPE.put(header, "bpm")
    for key in _SETUP_CARDS:
        if key in source:
            header[key] = (source[key], source.comments[key])
    cards.FILT.put(header, "")
    for bit, name in BIT_NAMES.items():
        header[f"CF_BIT{bit}"] = (name, f"meaning of mask bit value {bit}")
        header[COUNT_CARDS[bit]] = (int(np.count_nonzero(bpm & bit)), f"pixels with bit {bit}")
    cards.MASKF.put(header, round(float(np.mean(bpm != 0)), 7), "fraction of pixels flagged")
    names = {"hot_sigma": "CF_HOTSG", "hot_rate": "CF_HOTRT", "low_threshold": "CF_LOWTH",
             "background_box": "CF_BKBOX", "unstable_factor": "CF_UNSTF", "min_frames": "CF_BPMIN"}
    for field, value in asdict(t).items():
        if value is not None:
            header[names[field]] = (value, f"threshold {field}")
    for kind, path in (("dark", dark_path), ("flat", flat_path)):
        if path is not None:
            stamp_calibration(header, kind, path)
    for i, path in enumerate(stack_paths, 1):
        header[f"CF_I{i:04d}"] = (card_text(Path(path).name), "stack input for the unstable test")
        header[f"CF_S{i:04d}"] = sha256_file(path)
    if stack_paths:
        header["NCOMBINE"] = (len(stack_paths), "frames in the unstable-pixel stack")
    cards.VERS.put(header, __version__)
    header["COMMENT"] = "Bad-pixel mask: bits OR together; 0 = good pixel."
    for bit, name in BIT_NAMES.items():
        header["COMMENT"] = f"bit value {bit}: {name}"


def write_bpm(bpm: np.ndarray, header: fits.Header, path: str | Path) -> str:
    """Primary header with the metadata, the mask as a uint8 ``SCI`` image; returns the SHA-256."""
    atomic_write(fits.HDUList([fits.PrimaryHDU(header=header),
                               fits.ImageHDU(bpm.astype(np.uint8), name="SCI")]), path)
    return sha256_file(path)

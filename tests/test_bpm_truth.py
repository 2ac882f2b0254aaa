"""The bad-pixel-mask builder against truth frames made here with numpy (no ccdflow.simulator):
a master dark with amplifier glow in a corner and hot pixels, a master flat with vignetting and
dead columns. Done-when of issue 14: false flags <= 0.3 % of good pixels with glow present,
hot and dead recall >= 99 %; a pixel both hot and low keeps both bits; a master of too few
frames is refused by name."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.builders.badpixels import BpmThresholds, TooFewFramesError, build_bpm
from ccdflow.framework.calibrations.bpm import HOT, LOW

SHAPE = (512, 512)
EXPTIME, N_DARKS, READ_NOISE = 300.0, 5, 7.0  # s, frames, e- (gain 1: ADU = e-)


def master_header(kind: str, ncombine: int, exptime: float = EXPTIME) -> fits.Header:
    header = fits.Header()
    header["CF_MTYPE"] = kind
    header["CF_EXPT"] = exptime
    header["NCOMBINE"] = ncombine
    header["CF_INST"] = "truth"
    return header


def truth(seed: int = 5, glow: float = 2.0, glow_scale: float = 60.0):
    """(dark master ADU, flat master, hot truth, dead truth, faint hot pixels): glow of 2 e-/s at
    the corner, falling with a 60 px scale (a 2.2 % corner region above 0.05 e-/s); 800 hot
    pixels whose excess rate is 0.05-5 e-/s, "hot" in the truth when the excess is 20 times
    the master's noise there or more (the fainter ones are neither asked for nor counted as
    false); 5 dead columns (flat 0-0.3) and 200 low pixels (0.05-0.4)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: SHAPE[0], : SHAPE[1]]
    rate = 0.002 + glow * np.exp(-np.hypot(yy, xx) / glow_scale)  # e-/s, glow in the (0, 0) corner
    hot = np.zeros(SHAPE, bool)
    hot.flat[rng.choice(hot.size, 800, replace=False)] = True
    excess = hot * np.exp(rng.uniform(np.log(0.05), np.log(5.0), SHAPE))
    # a master of N darks: mean of N frames of Poisson(rate t) + read noise, bias removed
    noise = np.sqrt(rate * EXPTIME + READ_NOISE**2) / np.sqrt(N_DARKS)
    faint = hot & (excess * EXPTIME < 20 * noise)
    hot &= ~faint
    signal = (rate + excess) * EXPTIME
    dark = signal + rng.normal(0, np.sqrt(signal + READ_NOISE**2) / np.sqrt(N_DARKS))
    vignetting = 1.0 - 0.3 * (np.hypot(yy - 256, xx - 256) / 362.0) ** 2
    flat = vignetting * (1 + rng.normal(0, 0.01, SHAPE))
    dead = np.zeros(SHAPE, bool)
    for column in rng.choice(np.arange(10, 500), 5, replace=False):
        dead[:, column] = True
        flat[:, column] *= rng.uniform(0.0, 0.3)
    low = np.zeros(SHAPE, bool)
    low.flat[rng.choice(low.size, 200, replace=False)] = True
    low &= ~dead
    flat[low] *= rng.uniform(0.05, 0.4, int(low.sum()))
    return dark.astype(np.float32), flat.astype(np.float32), hot, dead | low, faint


@pytest.mark.parametrize(("glow", "scale", "in_corner"), [(2.0, 60.0, 0.003), (20.0, 8.0, 0.01)],
                         ids=["broad glow", "steep bright glow"])
def test_glow_is_not_hot_and_hot_and_dead_pixels_are_found(glow, scale, in_corner):
    """A steep glow (20 e-/s falling by e every 8 px) too: a 32 px background box flagged
    0.9-1.6 % of good pixels in such a corner; a 5 x 5 median follows it, all but the few
    pixels at the apex of its cusp (0.56 % of the 100 x 100 corner, 0.02 % of the frame)."""
    dark, flat, hot, dead, faint = truth(glow=glow, glow_scale=scale)
    assert hot.sum() > 500 and dead.sum() > 2000
    bpm, header = build_bpm(master_header("dark", N_DARKS), dark, master_header("flat", 5), flat)
    good = ~hot & ~dead & ~faint
    false = ((bpm != 0) & good).sum() / good.sum()
    assert false <= 0.003, false
    # the glow corner itself: no false hot flags there
    corner = np.zeros(SHAPE, bool)
    corner[:100, :100] = True
    assert ((bpm & HOT) != 0)[corner & good].sum() <= in_corner * (corner & good).sum()
    assert ((bpm & HOT) != 0)[hot].mean() >= 0.99
    assert ((bpm & LOW) != 0)[dead].mean() >= 0.99
    assert header["CF_BPMIN"] == 3 and header["CF_NHOT"] == int(((bpm & HOT) != 0).sum())


def test_global_median_would_flag_the_glow():
    """Guard of the guard: the same frame against a global median and MAD flags the glow corner
    (what the builder did before), so the test above measures the local background."""
    from astropy.stats import mad_std

    dark, _, hot, _, _ = truth()
    rate = dark / EXPTIME
    flagged = rate > np.median(rate) + 10 * mad_std(rate)
    assert (flagged & ~hot).sum() > 0.01 * (~hot).sum()


def test_a_pixel_both_hot_and_low_keeps_both_bits():
    dark, flat, *_ = truth()
    both = (100, 300)
    dark[both] += 1000.0 * EXPTIME / 100  # a strongly hot pixel...
    flat[both] = 0.01  # ...that is also dead in the flat
    bpm, header = build_bpm(master_header("dark", N_DARKS), dark, master_header("flat", 5), flat)
    assert bpm[both] == HOT | LOW
    assert header["CF_NHOT"] == int(((bpm & HOT) != 0).sum())
    assert header["CF_NLOW"] == int(((bpm & LOW) != 0).sum())


@pytest.mark.parametrize("kind", ["dark", "flat"])
def test_a_master_of_too_few_frames_is_refused(kind):
    dark, flat, *_ = truth()
    headers = {"dark": master_header("dark", N_DARKS), "flat": master_header("flat", 5)}
    headers[kind]["NCOMBINE"] = 1
    with pytest.raises(TooFewFramesError, match="NCOMBINE.*found 1.*>= 3"):
        build_bpm(headers["dark"], dark, headers["flat"], flat, dark_path="d.fits", flat_path="f.fits")
    # the minimum is a threshold: 1 is accepted when asked for
    bpm, header = build_bpm(headers["dark"], dark, headers["flat"], flat,
                            thresholds=BpmThresholds(min_frames=1))
    assert header["CF_BPMIN"] == 1 and bpm.any()


def test_a_master_without_ncombine_is_refused():
    dark, *_ = truth()
    header = master_header("dark", N_DARKS)
    del header["NCOMBINE"]
    with pytest.raises(TooFewFramesError, match="NCOMBINE, not present"):
        build_bpm(header, dark)

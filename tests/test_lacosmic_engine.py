"""ccdflow's L.A.Cosmic engine against astroscrappy 1.3: the same masks and the same cleaned
values, bit for bit, on random frames (hypothesis: sizes down to 4 px, noise, stars, hits,
with and without a variance, a mask, a background, saturation; 1-4 iterations; separable
or full medians), on the real EFOSC2 science frames and on the GMOS known-answer cutout.
The pieces are held to astroscrappy's own functions too, so a difference points at one."""

from __future__ import annotations

import itertools

import astroscrappy
import numpy as np
import pytest
import scipy.ndimage as ndi
from astropy.io import fits
from astroscrappy import utils as scrappy
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ccdflow.framework.numerics import lacosmic_medians
from ccdflow.framework.numerics.lacosmic import detect_cosmics, supports
from ccdflow.framework.numerics.lacosmic_masks import dilate
from ccdflow.framework.numerics.lacosmic_medians import median_filter
from ccdflow.framework.numerics.lacosmic_stencils import laplacian_to_noise
from ccdflow.plugins.steps.cosmicray import detect_cosmic_rays

EFOSC_SCIENCE = ("EFOSC.2022-01-27T02-31-32.701", "EFOSC.2022-01-28T04-54-24.341",
                 "EFOSC.2022-01-28T08-37-47.742", "EFOSC.2022-01-29T01-12-03.548")


@pytest.mark.parametrize("n", [3, 5, 7, 9])
def test_selection_networks_pick_the_median_of_every_0_1_input(n):
    """A comparator network selects the k-th value of every input iff it does of every 0/1 input."""
    median = getattr(lacosmic_medians, f"median{n}").py_func
    for bits in itertools.product([0.0, 1.0], repeat=n):
        assert median(*bits) == sorted(bits)[n // 2]


def frame(seed: int, ny: int, nx: int) -> np.ndarray:
    """Sky with Poisson-like noise, up to three Gaussian stars and random positive hits."""
    rng = np.random.default_rng(seed)
    sky = rng.uniform(0, 2000)
    image = rng.normal(sky, np.sqrt(sky + 25), (ny, nx))
    yy, xx = np.mgrid[:ny, :nx]
    for _ in range(rng.integers(0, 4)):
        y, x, width = rng.uniform(0, ny), rng.uniform(0, nx), rng.uniform(0.7, 2.5)
        image += rng.uniform(100, 8e4) * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * width**2))
    k = rng.integers(0, max(1, ny * nx // 30))
    image[rng.integers(0, ny, k), rng.integers(0, nx, k)] += rng.uniform(50, 5000, k)
    return image.astype(np.float32)


def assert_same(image, **options):
    ours = detect_cosmics(image, **options)
    theirs = astroscrappy.detect_cosmics(image, **options)
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 2**32 - 1), ny=st.integers(4, 80), nx=st.integers(4, 80),
       sigclip=st.floats(3, 6), sigfrac=st.floats(0.1, 0.6), objlim=st.floats(1, 10),
       gain=st.sampled_from([1.0, 0.7, 1.933]), readnoise=st.floats(2, 10),
       saturation=st.sampled_from(["none", "high", "in-frame"]), niter=st.integers(1, 4),
       sepmed=st.booleans(), with_var=st.booleans(), with_mask=st.booleans(),
       with_bkg=st.booleans())
def test_same_masks_and_cleaned_values_as_astroscrappy(seed, ny, nx, sigclip, sigfrac, objlim, gain,
                                                       readnoise, saturation, niter, sepmed,
                                                       with_var, with_mask, with_bkg):
    image = frame(seed, ny, nx)
    rng = np.random.default_rng(seed + 1)
    satlevel = {"none": np.inf, "high": 65535.0, "in-frame": float(np.percentile(image, 99.5))}
    options = dict(sigclip=sigclip, sigfrac=sigfrac, objlim=objlim, gain=gain, readnoise=readnoise,
                   satlevel=satlevel[saturation], niter=niter, sepmed=sepmed)
    if with_var:
        options["invar"] = np.abs(image * rng.uniform(0.5, 2) + 30).astype(np.float32)
    if with_mask:
        options["inmask"] = rng.random(image.shape) < 0.02
    if with_bkg:
        options["inbkg"] = np.full(image.shape, np.median(image) * 0.9, np.float32)
    assert_same(image, **options)


def test_pieces_equal_astroscrappys_functions():
    rng = np.random.default_rng(5)
    for shape in [(4, 4), (5, 9), (37, 61), (128, 129)]:
        x = (rng.normal(size=shape) * rng.uniform(1, 1e4) + rng.uniform(0, 1e4)).astype(np.float32)
        for half, theirs in enumerate([scrappy.sepmedfilt3, scrappy.sepmedfilt5, scrappy.sepmedfilt7,
                                       scrappy.sepmedfilt9], start=1):
            np.testing.assert_array_equal(median_filter(x, half, True), theirs(x))
        for half, theirs in enumerate([scrappy.medfilt3, scrappy.medfilt5, scrappy.medfilt7], start=1):
            np.testing.assert_array_equal(median_filter(x, half, False), theirs(x))
        replicated = scrappy.laplaceconvolve(scrappy.subsample(x))
        replicated[replicated < 0] = 0
        noise = rng.uniform(0.5, 100, shape).astype(np.float32)
        ours = np.empty_like(x)
        laplacian_to_noise(x, noise, ours)
        np.testing.assert_array_equal(ours, scrappy.rebin(replicated) / (2.0 * noise))
        bits = (rng.random(shape) < 0.05).astype(np.uint8)
        grown = np.empty_like(bits)
        dilate(bits, 1, grown)
        np.testing.assert_array_equal(grown.astype(bool), scrappy.dilate3(bits))
        dilate(bits, 2, grown)
        np.testing.assert_array_equal(grown.astype(bool), scrappy.dilate5(bits, 1))


def test_declines_what_it_does_not_compute():
    assert supports(fsmode="median", cleantype="meanmask")
    assert not supports(fsmode="convolve") and not supports(cleantype="idw")
    with pytest.raises(ValueError, match="use astroscrappy"):
        detect_cosmics(np.zeros((8, 8), np.float32), cleantype="medmask")


@pytest.mark.parametrize("name", EFOSC_SCIENCE)
def test_real_efosc2_science_frames(real_data, name):
    """Raw EFOSC2 science frames less a bias level, as the step sends them (reflected edges,
    objlim 8, 4 iterations) and as they are (astroscrappy's own edges)."""
    path = real_data / "efosc-ntt" / f"{name}.fits.gz"
    with fits.open(path) as hdul:
        raw = hdul[0].data.astype(np.float32)
    electrons = (raw - np.float32(np.median(raw[:, :8]))) * np.float32(1.18)
    options = dict(gain=1.0, read_noise=10.0, satlevel=65535.0 * 1.18, sigclip=4.5, sigfrac=0.3,
                   objlim=8.0, niter=4, sepmed=True, fsmode="median", cleantype="meanmask")
    ours = detect_cosmic_rays(electrons, None, engine="ccdflow", **options)
    theirs = detect_cosmic_rays(electrons, None, engine="astroscrappy", **options)
    assert theirs[0].sum() > 20  # real hits to agree on
    np.testing.assert_array_equal(ours[0], theirs[0])
    np.testing.assert_array_equal(ours[1], theirs[1])
    assert_same(electrons[:400, :500], gain=1.0, readnoise=10.0, objlim=8.0, niter=2)


def test_gmos_known_answer(real_data):
    """astroscrappy's own known answer: with the fitted sky (and the variance) exactly two hits."""
    with fits.open(real_data / "cosmic-ray-frames" / "gmos-s-S20190808S0048-cutout.fits") as hdul:
        sci, var, sky = (hdul[name].data.astype(np.float32) for name in ("SCI", "VAR", "SKYFIT"))
    for extra in ({}, {"invar": var}):
        options = dict(inbkg=sky, readnoise=4.24, gain=1.933, **extra)
        assert_same(sci, **options)
        crmask, _ = detect_cosmics(sci, **options)
        labels, n = ndi.label(crmask, structure=np.ones((3, 3)))
        assert ndi.find_objects(labels) == [(slice(41, 72), slice(142, 161)),
                                            (slice(117, 147), slice(35, 43))]
    assert_same(sci, readnoise=4.24, gain=1.933)

"""The combine engine against ccdproc.combine, astropy and simple references on small stacks."""

from __future__ import annotations

import warnings

import ccdproc
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData
from hypothesis import given, settings
from hypothesis import strategies as st

from ccdflow.framework.engine.errors import AlgorithmError, ConfigError, UnprocessableInputError
from ccdflow.framework.numerics.combine import combine, fits_source


def _stack(seed: int = 3, n: int = 11, shape=(64, 48)) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    frames = [rng.normal(500.0, 10.0, shape).astype(np.float32) for _ in range(n)]
    frames[2][10, 10] = 9000.0  # cosmic ray
    frames[5][20:23, 30] = 5000.0
    frames[7][5, 5] = -300.0
    return frames


@pytest.fixture
def stack() -> list[np.ndarray]:
    return _stack()


def _ccdproc(frames, **kwargs) -> CCDData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ccdproc.combine([CCDData(f, unit="adu") for f in frames], **kwargs)


def _clip_kwargs(low=3.0, high=3.0, func="median", dev="mad_std") -> dict:
    return dict(sigma_clip=True, sigma_clip_low_thresh=low, sigma_clip_high_thresh=high,
                sigma_clip_func=func, sigma_clip_dev_func=dev)


def test_median_matches_ccdproc(stack):
    ours = combine(stack, method="median", clip="none")
    np.testing.assert_allclose(ours.data, _ccdproc(stack, method="median").data, rtol=1e-7)
    assert (ours.n_used == len(stack)).all()


def test_mean_matches_ccdproc_with_its_error(stack):
    ours = combine(stack, method="mean", clip="none")
    ref = _ccdproc(stack, method="average")
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)
    n = len(stack)  # ccdproc's error is the ddof=0 std / sqrt(n); ours uses ddof=1
    np.testing.assert_allclose(ours.error, ref.uncertainty.array * np.sqrt(n / (n - 1)), rtol=1e-5)


@pytest.mark.parametrize(("method", "func", "dev"), [
    ("mean", "median", "mad_std"), ("median", "median", "mad_std"),
    ("mean", "mean", "std"), ("mean", "median", "std"), ("mean", "mean", "mad_std"),
])
def test_sigma_clip_matches_ccdproc_exactly(stack, method, func, dev):
    ours = combine(stack, method=method, clip="sigma", sigma_low=2.5, sigma_high=2.0, center=func,
                   deviation=dev)
    ref = _ccdproc(stack, method="average" if method == "mean" else "median",
                   **_clip_kwargs(2.5, 2.0, func, dev))
    # float64 clip statistics: the same pixels are rejected, so only float32 rounding remains
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)
    if func == "median":
        assert ours.data[10, 10] < 600 and ours.n_used[10, 10] <= len(stack) - 1
    elif dev == "mad_std":  # the mean is pulled 770 ADU up by the cosmic ray: all rejected, as ccdproc
        assert np.isnan(ours.data[10, 10]) and ours.n_used[10, 10] == 0


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), n=st.integers(3, 24), low=st.floats(1.0, 4.0), high=st.floats(1.0, 4.0))
def test_sigma_clip_matches_ccdproc_on_random_stacks(seed, n, low, high):
    rng = np.random.default_rng(seed)
    frames = [(rng.standard_t(3, (6, 7)) * 20 + 1000).astype(np.float32) for _ in range(n)]
    ours = combine(frames, method="mean", clip="sigma", sigma_low=low, sigma_high=high)
    ref = _ccdproc(frames, method="average", **_clip_kwargs(low, high))
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)


def test_minmax_matches_ccdproc_clip_extrema(stack):
    ours = combine(stack, method="mean", clip="minmax", n_low=2, n_high=1)
    ref = _ccdproc(stack, method="average", clip_extrema=True, nlow=2, nhigh=1)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)
    assert (ours.n_used == len(stack) - 3).all()


@pytest.mark.parametrize("method", ["mean", "median"])
def test_scales_match_ccdproc(stack, method):
    scales = np.linspace(0.5, 2.0, len(stack))
    ours = combine(stack, method=method, clip="none", scales=scales)
    ref = _ccdproc(stack, method="average" if method == "mean" else "median", scale=scales)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)


def test_weights_match_ccdproc(stack):
    weights = np.arange(1.0, len(stack) + 1.0)
    ours = combine(stack, method="mean", clip="none", weights=weights)
    ref = _ccdproc(stack, method="average", weights=weights)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)


def test_weights_skip_rejected_values(stack):
    weights = np.ones(len(stack))
    weights[2] = 100.0  # the frame holding the cosmic ray at (10, 10)
    out = combine(stack, method="mean", clip="sigma", weights=weights)
    survivors = [f[10, 10] for i, f in enumerate(stack) if i != 2]
    assert out.data[10, 10] == pytest.approx(np.mean(survivors), rel=1e-6)


def test_masks_and_scales_are_honoured():
    frames = [np.full((4, 4), v, np.float32) for v in (1.0, 2.0, 4.0)]
    masks = [None, np.zeros((4, 4), bool), np.ones((4, 4), bool)]
    out = combine(frames, method="mean", clip="none", masks=masks, scales=[2.0, 1.0, 1.0])
    np.testing.assert_allclose(out.data, 2.0)
    assert (out.n_used == 2).all()


@pytest.mark.parametrize(("method", "clip"), [("median", "none"), ("mean", "sigma"), ("mean", "minmax")])
def test_nan_and_inf_are_masked_exactly_like_masks(stack, method, clip):
    rng = np.random.default_rng(9)
    masks = [rng.random(stack[0].shape) < 0.2 for _ in stack]
    poisoned = [np.where(m, rng.choice([np.nan, np.inf, -np.inf], m.shape), f).astype(np.float32)
                for f, m in zip(stack, masks, strict=True)]
    by_nan = combine(poisoned, method=method, clip=clip)
    by_mask = combine(stack, method=method, clip=clip, masks=masks)
    np.testing.assert_array_equal(by_nan.data, by_mask.data)
    np.testing.assert_array_equal(by_nan.n_used, by_mask.n_used)
    assert np.isfinite(by_nan.data[by_nan.n_used > 0]).all()
    if clip == "none":
        assert (by_nan.n_used == len(stack) - np.sum(masks, axis=0)).all()
        ref = np.nanmedian(np.where(np.isfinite(poisoned), poisoned, np.nan), axis=0)
        np.testing.assert_allclose(by_nan.data, ref, rtol=1e-7)


def test_a_pixel_with_nothing_left_is_nan_with_n_used_zero(stack):
    frames = [f.copy() for f in stack]
    for f in frames:
        f[0, 0] = np.nan
    out = combine(frames, method="mean", clip="sigma")
    assert np.isnan(out.data[0, 0]) and np.isnan(out.error[0, 0]) and out.n_used[0, 0] == 0
    assert np.isfinite(out.data[1:]).all()


def _iraf_clip(values: np.ndarray, iterations: int, low: float, high: float) -> np.ndarray:
    """Reference: cumulative clip of one pixel with median / MAD-std, rejections kept."""
    keep = values.astype(np.float64)
    for _ in range(iterations):
        med = np.median(keep)
        spread = np.median(np.abs(keep - med)) * 1.482602218505602
        new = keep[(keep >= med - low * spread) & (keep <= med + high * spread)]
        if new.size == keep.size:
            break
        keep = new
    return keep


@pytest.mark.parametrize("iterations", [2, 5])
def test_iterations_are_cumulative(iterations):
    rng = np.random.default_rng(5)
    cube = (rng.standard_t(2, (15, 12, 10)) * 10 + 100).astype(np.float32)
    out = combine(list(cube), method="mean", clip="sigma", iterations=iterations, sigma_low=2.0)
    once = combine(list(cube), method="mean", clip="sigma", sigma_low=2.0)
    for y in range(cube.shape[1]):
        for x in range(cube.shape[2]):
            keep = _iraf_clip(cube[:, y, x], iterations, 2.0, 3.0)
            assert out.n_used[y, x] == keep.size
            assert out.data[y, x] == pytest.approx(keep.mean(), rel=1e-6)
    assert (out.n_used <= once.n_used).all() and (out.n_used < once.n_used).any()


def test_rejected_out_flags_rejections_not_input_masks(stack):
    masks = [np.zeros(stack[0].shape, bool) for _ in stack]
    masks[2][10, 10] = True  # the cosmic ray is masked on input: not a rejection
    rejected = [np.zeros(stack[0].shape, bool) for _ in stack]
    out = combine(stack, method="mean", clip="sigma", masks=masks, rejected_out=rejected)
    assert not rejected[2][10, 10]
    assert rejected[5][20:23, 30].all() and rejected[7][5, 5]
    masked = np.sum(masks, axis=0)
    np.testing.assert_array_equal(np.sum(rejected, axis=0), len(stack) - masked - out.n_used)


def test_rejected_out_with_minmax_ties_counts_exactly():
    frames = [np.full((3, 3), v, np.float32) for v in (1.0, 1.0, 1.0, 2.0, 2.0)]
    rejected = [np.zeros((3, 3), bool) for _ in frames]
    out = combine(frames, method="mean", clip="minmax", n_low=2, n_high=1, rejected_out=rejected)
    np.testing.assert_allclose(out.data, 1.5)
    assert [r[0, 0] for r in rejected] == [True, True, False, True, False]  # ties: earliest frames


def test_error_is_standard_error_of_the_mean():
    rng = np.random.default_rng(0)
    frames = [rng.normal(0, 4.0, (200, 200)).astype(np.float32) for _ in range(16)]
    out = combine(frames, method="mean", clip="none")
    assert np.mean(out.error) == pytest.approx(1.0, rel=0.05)  # c4(16) = 0.983
    assert np.std(out.data) == pytest.approx(1.0, rel=0.05)
    med = combine(frames, method="median", clip="none")  # sqrt(pi/2) x, within small-n effects
    assert np.mean(med.error) == pytest.approx(np.std(med.data), rel=0.1)


def _error_ratio(out, level: float, good=None) -> float:
    """Scatter of the result about the true level over the RMS of its error plane (1 = right)."""
    good = out.n_used >= 2 if good is None else good
    resid = out.data[good].astype(np.float64) - level
    return float(np.sqrt(np.mean(resid**2) / np.mean(np.square(out.error[good], dtype=np.float64))))


@pytest.mark.parametrize(("method", "clip"), [("mean", "sigma"), ("median", "sigma"), ("median", "none"),
                                              ("mean", "minmax"), ("mean", "none")])
def test_error_plane_predicts_the_scatter_of_the_result(method, clip):
    """Gaussian stacks of 3 to 40 frames: the error plane's RMS is the scatter of the result.

    The survivors' std / sqrt(n_used) alone is 40 % low for a clipped mean of 3 frames and 16 % low
    at 9 (the clip drops good values); sqrt(pi/2) for the median is 13 % high at 4 frames.
    """
    rng = np.random.default_rng(11)
    for n in (3, 4, 5, 9, 20, 40):
        if clip == "minmax" and n < 4:
            continue  # one survivor: no error
        frames = list(rng.normal(100.0, 7.0, (n, 100, 200)).astype(np.float32))
        out = combine(frames, method=method, clip=clip)
        assert _error_ratio(out, 100.0) == pytest.approx(1.0, abs=0.03), n


def test_error_plane_with_masked_inputs_follows_each_pixels_count():
    """Masks leave each pixel its own number of good values; the error follows that number."""
    rng = np.random.default_rng(12)
    frames = list(rng.normal(0.0, 3.0, (9, 200, 200)).astype(np.float32))
    masks = [rng.random((200, 200)) < 0.4 for _ in frames]
    good = len(frames) - np.sum(masks, axis=0)
    out = combine(frames, method="mean", clip="sigma", masks=masks)
    for k in (4, 5, 6, 7):
        assert _error_ratio(out, 0.0, (good == k) & (out.n_used >= 2)) == pytest.approx(1.0, abs=0.05), k


@pytest.mark.parametrize("clip", ["sigma", "minmax", "none"])
def test_many_bands_and_one_thread_give_identical_results(stack, clip):
    whole = combine(stack, method="mean", clip=clip)
    limit = 64 * 48 * 10 + 5 * 48 * (11 * 4 + 8)  # outputs plus five rows of band
    banded = combine(stack, method="mean", clip=clip, memory_limit=limit, threads=1)
    tiny = combine(stack, method="mean", clip=clip, band_bytes=1)
    for other in (banded, tiny):
        np.testing.assert_array_equal(whole.data, other.data)
        np.testing.assert_array_equal(whole.n_used, other.n_used)


def test_fits_sources_with_bzero_int16_blank_and_float_data(tmp_path, stack):
    rng = np.random.default_rng(1)
    ints = [rng.integers(30000, 40000, (64, 48)).astype(np.uint16) for _ in range(5)]
    paths = []
    for i, data in enumerate(ints):
        hdu = fits.PrimaryHDU(data)  # astropy stores uint16 as int16 with BZERO = 32768
        paths.append(tmp_path / f"u{i}.fits")
        hdu.writeto(paths[-1])
    assert fits.getheader(paths[0])["BZERO"] == 32768 and fits.getheader(paths[0])["BITPIX"] == 16
    sources = [fits_source(p) for p in paths]
    out = combine(sources, method="median", clip="none", band_bytes=1)
    np.testing.assert_array_equal(out.data, np.median(np.stack(ints).astype(np.float64), axis=0))

    blank = fits.ImageHDU(np.full((64, 48), 7, np.int16))
    blank.data[3, 4] = -99
    blank.header["BLANK"] = -99
    fits.HDUList([fits.PrimaryHDU(), blank]).writeto(tmp_path / "blank.fits")
    src = fits_source(tmp_path / "blank.fits", hdu=1)
    out = combine([src] * 3, method="mean", clip="none")
    assert out.n_used[3, 4] == 0 and (out.data[out.n_used > 0] == 7).all()

    for i, f in enumerate(stack):
        fits.PrimaryHDU(f).writeto(tmp_path / f"f{i}.fits")
    from_files = combine([fits_source(tmp_path / f"f{i}.fits") for i in range(len(stack))],
                         method="mean", clip="sigma", memory_limit=10**6)
    np.testing.assert_array_equal(from_files.data, combine(stack, method="mean", clip="sigma").data)


def test_fits_source_reads_compressed_images(tmp_path, stack):
    for i, f in enumerate(stack[:4]):
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(f, compression_type="GZIP_1")]).writeto(
            tmp_path / f"c{i}.fits")
    out = combine([fits_source(tmp_path / f"c{i}.fits", hdu=1) for i in range(4)], clip="none",
                  band_bytes=1)
    decoded = [fits.getdata(tmp_path / f"c{i}.fits", 1) for i in range(4)]  # quantised: lossy
    np.testing.assert_array_equal(out.data, combine(decoded, clip="none").data)


def test_bad_fits_sources_are_refused(tmp_path):
    with pytest.raises(UnprocessableInputError, match="file not found"):
        fits_source(tmp_path / "missing.fits")
    fits.PrimaryHDU(np.zeros((2, 3, 4), np.float32)).writeto(tmp_path / "cube.fits")
    with pytest.raises(UnprocessableInputError, match=r"NAXIS, found 3, expected 2"):
        fits_source(tmp_path / "cube.fits")
    fits.PrimaryHDU(np.zeros((20, 20), np.float32)).writeto(tmp_path / "cut.fits")
    source = fits_source(tmp_path / "cut.fits")
    with open(tmp_path / "cut.fits", "r+b") as fh:
        fh.truncate(2880 + 800)
    with pytest.raises(UnprocessableInputError, match="truncated"):
        combine([source] * 3, clip="none")


def test_bad_inputs_are_refused():
    with pytest.raises(AlgorithmError, match="no input frames"):
        combine([])
    with pytest.raises(AlgorithmError, match=r"different shapes: frame 0 is \(2, 2\), frame 1 is \(3, 3\)"):
        combine([np.zeros((2, 2)), np.zeros((3, 3))])
    with pytest.raises(AlgorithmError, match="at least 3 frames, got 2; use clip='none' or clip='minmax'"):
        combine([np.zeros((2, 2))] * 2, clip="sigma")
    with pytest.raises(AlgorithmError, match="leaves nothing"):
        combine([np.zeros((2, 2))] * 2, clip="minmax")
    with pytest.raises(ConfigError, match="method='mode'"):
        combine([np.zeros((2, 2))] * 3, method="mode")
    with pytest.raises(ConfigError, match="weights apply to method='mean' only"):
        combine([np.zeros((2, 2))] * 3, method="median", weights=[1, 1, 1])
    with pytest.raises(ConfigError, match="scales must be 3 finite numbers"):
        combine([np.zeros((2, 2))] * 3, scales=[1, 2])
    with pytest.raises(ConfigError, match="memory_limit=50 bytes is too small"):
        combine([np.zeros((2, 2))] * 3, memory_limit=50)
    with pytest.raises(ConfigError, match="rejected_out"):
        combine([np.zeros((2, 2))] * 3, rejected_out=[np.zeros((2, 2), np.uint8)] * 3)

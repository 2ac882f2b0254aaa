"""The combine engine against ccdproc.combine on the same stack."""

from __future__ import annotations

import warnings

import ccdproc
import numpy as np
import pytest
from astropy.nddata import CCDData

from ccdflow.framework.combine import combine
from ccdflow.framework.errors import AlgorithmError


@pytest.fixture
def stack():
    rng = np.random.default_rng(3)
    frames = [rng.normal(500.0, 10.0, (64, 48)).astype(np.float32) for _ in range(11)]
    frames[2][10, 10] = 9000.0  # cosmic ray
    frames[5][20:23, 30] = 5000.0
    return frames


def test_median_matches_ccdproc(stack):
    ours = combine(stack, method="median", clip="none")
    ref = ccdproc.combine([CCDData(f.astype(np.float64), unit="adu") for f in stack], method="median")
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)


def test_sigma_clipped_mean_matches_ccdproc_one_pass_rule(stack):
    ours = combine(stack, method="mean", clip="sigma", sigma_low=3, sigma_high=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = ccdproc.combine(
            [CCDData(f.astype(np.float64), unit="adu") for f in stack], method="average",
            sigma_clip=True, sigma_clip_low_thresh=3, sigma_clip_high_thresh=3,
            sigma_clip_func="median", sigma_clip_dev_func="mad_std",
        )
    diff = np.abs(ours.data - ref.data)
    # float32 vs float64 at the clip boundary (BASELINES.md): a handful of pixels may differ
    assert np.mean(diff > 1e-3) < 0.002
    assert ours.data[10, 10] < 600 and ours.n_used[10, 10] <= 10


def test_minmax_rejects_extremes(stack):
    ours = combine(stack, method="mean", clip="minmax", n_low=1, n_high=1)
    assert ours.data[10, 10] < 600
    assert (ours.n_used == 9).all()


def test_masks_and_scales_are_honoured():
    frames = [np.full((4, 4), v, np.float32) for v in (1.0, 2.0, 4.0)]
    masks = [None, np.zeros((4, 4), bool), np.ones((4, 4), bool)]
    out = combine(frames, method="mean", clip="none", masks=masks, scales=[2.0, 1.0, 1.0])
    np.testing.assert_allclose(out.data, 2.0)
    assert (out.n_used == 2).all()


def test_error_is_standard_error_of_the_mean():
    rng = np.random.default_rng(0)
    frames = [rng.normal(0, 4.0, (200, 200)).astype(np.float32) for _ in range(16)]
    out = combine(frames, method="mean", clip="none")
    assert np.mean(out.error) == pytest.approx(1.0, rel=0.05)  # c4(16) = 0.983
    assert np.std(out.data) == pytest.approx(1.0, rel=0.05)


def test_bands_do_not_change_the_result(stack):
    a = combine(stack, method="mean", clip="sigma")
    b = combine(stack, method="mean", clip="sigma", band_bytes=1)
    np.testing.assert_array_equal(a.data, b.data)


def test_bad_inputs_are_refused():
    with pytest.raises(AlgorithmError, match="no input frames"):
        combine([])
    with pytest.raises(AlgorithmError, match="different shapes"):
        combine([np.zeros((2, 2)), np.zeros((3, 3))])
    with pytest.raises(AlgorithmError, match="leaves nothing"):
        combine([np.zeros((2, 2))] * 2, clip="minmax")

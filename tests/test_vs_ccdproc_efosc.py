"""ccdflow against ccdproc on the real EFOSC2 frames: the same inputs, the same algorithm, the
same numbers (to float32 rounding). Darks are absent from this set; the dark step is compared
on simulated frames in tests/test_steps.py."""

from __future__ import annotations

import warnings

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.io.fitsio import read_ccd
from ccdflow.framework.numerics.combine import combine
from ccdflow.testing import run_step

BIASSEC, TRIMSEC = "[1024:1029,1:1024]", "[2:1022,1:1016]"  # as in efosc2.yaml


@pytest.fixture(scope="module")
def efosc() -> dict[str, list]:
    """The EFOSC2 frames' metadata by frame type."""
    from tests.conftest import REAL_DATA

    folder = REAL_DATA / "efosc-ntt"
    if not folder.is_dir():
        pytest.skip(f"real data not available: {folder} is missing")
    from ccdflow.framework.engine.plugins import get_plugin_manager
    from ccdflow.framework.headers.scan import scan_paths

    frames, _ = scan_paths(sorted(folder.glob("*.fits.gz")), get_plugin_manager(reload=True))
    by_type: dict[str, list] = {}
    for meta in frames:
        by_type.setdefault(meta.frame_type, []).append(meta)
    return by_type


def step(name, ccd, meta, calibrations=None, **params):
    """One step on an EFOSC2 frame, as the efosc2 recipe runs it."""
    return run_step(name, ccd, meta=meta, instrument="efosc2", calibrations=calibrations, params=params)


def ours_trimmed(meta) -> CCDData:
    ccd = read_ccd(meta.path)
    ccd = step("overscan", ccd, meta, method="line_median")
    return step("trim", ccd, meta)


def ccdproc_trimmed(meta) -> CCDData:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ccd = CCDData.read(meta.path, unit="adu")
    # ccdproc wants an overscan as tall as the frame: keep rows 1-1024 (the overscan's) first
    ccd = ccdproc.trim_image(ccd, fits_section="[1:1030,1:1024]")
    ccd = ccdproc.subtract_overscan(ccd, fits_section=BIASSEC, median=True, overscan_axis=1)
    return ccdproc.trim_image(ccd, fits_section=TRIMSEC)


def test_overscan_and_trim_match_ccdproc_on_every_bias(efosc):
    for meta in efosc["bias"]:
        ours, ref = ours_trimmed(meta), ccdproc_trimmed(meta)
        assert ours.shape == ref.shape == (1016, 1021)
        np.testing.assert_allclose(ours.data, ref.data, atol=1e-3)


@pytest.fixture(scope="module")
def stacks(efosc):
    ours = [ours_trimmed(m) for m in efosc["bias"]]
    theirs = [ccdproc_trimmed(m) for m in efosc["bias"]]
    return ours, theirs


@pytest.mark.parametrize("method", ["median", "mean"])
def test_plain_combine_matches_ccdproc(stacks, method):
    ours, theirs = stacks
    result = combine([c.data for c in ours], method=method, clip="none")
    ref = ccdproc.combine(theirs, method="median" if method == "median" else "average",
                          dtype=np.float64)
    np.testing.assert_allclose(result.data, ref.data, atol=2e-3)


def test_sigma_clipped_mean_matches_ccdproc(stacks):
    """One pass, centre median, spread MAD-std, 3/3 sigma: ccdproc's textbook clip.

    float32 against float64 at the clip boundary may decide a value differently (BASELINES:
    ~50 pixels of 4M in a 20-frame stack); on these 5 frames no more than 0.01 % may differ.
    """
    ours, theirs = stacks
    result = combine([c.data for c in ours], method="mean", clip="sigma", sigma_low=3, sigma_high=3)
    ref = ccdproc.combine(theirs, method="average", sigma_clip=True, sigma_clip_low_thresh=3,
                          sigma_clip_high_thresh=3, sigma_clip_func="median",
                          sigma_clip_dev_func="mad_std", dtype=np.float64)
    close = np.isclose(result.data, ref.data, atol=2e-3)
    assert close.mean() > 0.9999, int((~close).sum())


def test_bias_flat_gain_and_deviation_match_ccdproc_on_a_real_science_frame(efosc, stacks):
    meta = sorted(efosc["science"], key=lambda m: m.path)[0]
    bias_data = np.median([c.data for c in stacks[0]], axis=0).astype(np.float32)
    bias = CCDData(bias_data, unit="adu", uncertainty=StdDevUncertainty(np.full(bias_data.shape, 2.0,
                                                                                 np.float32)))
    flat_meta = efosc["flat"][0]
    flat_raw = ours_trimmed(flat_meta).data - bias_data
    flat = CCDData((flat_raw / np.median(flat_raw)).astype(np.float32), unit="adu",
                   uncertainty=StdDevUncertainty(np.full(flat_raw.shape, 0.01, np.float32)))
    gain, rn = meta.gain, meta.read_noise
    assert gain == pytest.approx(1.10) and rn == pytest.approx(7.8)  # CONAD and RON from the header

    ours = ours_trimmed(meta)
    ref = ccdproc_trimmed(meta)
    ours = step("uncertainty", ours, meta)
    ref = ccdproc.create_deviation(ref, gain=gain * u.electron / u.adu, readnoise=rn * u.electron,
                                   disregard_nan=True)
    # ccdflow's overscan step adds the noise of the level it subtracted (CF_ON<amp>, the same
    # for every row of a line median over a fully finite prescan; issue 14 item 6): the same
    # term on ccdproc's side
    (os_var,) = [float(v) for k, v in ours.header.items() if k.startswith("CF_ON")]
    # e(6) s^2 / 6 for the 6-column prescan, s its measured noise (~11.6 ADU on this frame)
    assert 0 < os_var < (rn / gain) ** 2
    ref.uncertainty = StdDevUncertainty(np.sqrt(ref.uncertainty.array ** 2 + os_var))
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-5, atol=1e-4)
    ours = step("bias", ours, meta, {"bias": bias})
    ref = ccdproc.subtract_bias(ref, bias)
    np.testing.assert_allclose(ours.data, ref.data, atol=2e-3)
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-5)
    ours = step("flat", ours, meta, {"flat": flat}, min_value=0.2)
    ref = ccdproc.flat_correct(ref, flat, norm_value=1.0)
    good = flat.data >= 0.2
    np.testing.assert_allclose(ours.data[good], ref.data[good], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ours.uncertainty.array[good], ref.uncertainty.array[good], rtol=1e-4)
    ours = step("gain", ours, meta)
    ref = ccdproc.gain_correct(ref, gain * u.electron / u.adu)
    np.testing.assert_allclose(ours.data[good], ref.data[good], rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(ours.uncertainty.array[good], ref.uncertainty.array[good], rtol=1e-4)
    assert str(ours.unit) == "electron"

"""Each built-in step against ccdproc's own function on the same input, and the recipe runner."""

from __future__ import annotations

import astropy.units as u
import ccdproc
import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.recipe import run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.testing import fake_instrument, make_ccd, make_meta, run_step

RNG = np.random.default_rng(7)


def raw_frame(ny=40, nx=60, oscan=8, level=1000.0) -> CCDData:
    data = RNG.normal(level, 5.0, (ny, nx + oscan)).astype(np.float32)
    data += np.linspace(0, 20, ny, dtype=np.float32)[:, None]  # row gradient the overscan must follow
    data[:, :nx] += 300.0
    header = fits.Header({"BIASSEC": f"[{nx + 1}:{nx + oscan},1:{ny}]", "TRIMSEC": f"[1:{nx},1:{ny}]",
                          "EXPTIME": 60.0})
    return CCDData(data, unit="adu", header=header)


def with_error(ccd: CCDData, sigma: float) -> CCDData:
    out = ccd.copy()
    out.uncertainty = StdDevUncertainty(np.full(ccd.shape, sigma, np.float32))
    return out


@pytest.mark.parametrize(("method", "median"), [("line_median", True)])
def test_overscan_matches_ccdproc_per_row(method, median):
    ccd = raw_frame()
    ours = run_step("overscan", ccd, params={"method": method})
    ref = ccdproc.subtract_overscan(ccd, fits_section="[61:68,1:40]", median=median, overscan_axis=1)
    np.testing.assert_allclose(ours.data, ref.data, atol=1e-3)


def test_overscan_poly_matches_ccdproc_model():
    from astropy.modeling import models

    ccd = raw_frame()
    ours = run_step("overscan", ccd, params={"method": "poly", "poly_order": 1})
    ref = ccdproc.subtract_overscan(ccd, fits_section="[61:68,1:40]", median=True, overscan_axis=1,
                                    model=models.Polynomial1D(1))
    np.testing.assert_allclose(ours.data, ref.data, atol=0.05)


def test_overscan_constant_methods_remove_the_level():
    ccd = raw_frame()
    for method in ("median", "mean", "clipped_mean"):
        out = run_step("overscan", ccd, params={"method": method})
        assert abs(np.median(out.data[:, 60:])) < 5.0


def test_trim_matches_ccdproc():
    ccd = raw_frame()
    ours = run_step("trim", ccd)
    ref = ccdproc.trim_image(ccd, fits_section="[1:60,1:40]")
    np.testing.assert_array_equal(ours.data, ref.data)
    assert "TRIMSEC" not in ours.header and ours.header["CF_TSEC"] == "[1:60,1:40]"


def test_bad_section_is_a_clear_error():
    ccd = raw_frame()
    ccd.header["BIASSEC"] = "[61:99,1:40]"
    with pytest.raises(UnprocessableInputError, match=r"reaches pixel 99 but the axis has 68"):
        run_step("overscan", ccd)


def test_bias_subtraction_matches_ccdproc_including_uncertainty():
    ccd, bias = with_error(raw_frame(), 5.0), with_error(raw_frame(level=990.0), 1.0)
    ours = run_step("bias", ccd, calibrations={"bias": bias})
    ref = ccdproc.subtract_bias(ccd, bias)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-6)


@pytest.mark.parametrize("dark_exptime", [60.0, 300.0])
def test_dark_scaling_matches_ccdproc(dark_exptime):
    ccd = with_error(raw_frame(), 5.0)
    dark = with_error(CCDData(RNG.gamma(2.0, 3.0, ccd.shape).astype(np.float32), unit="adu"), 0.5)
    dark.header["EXPTIME"] = dark_exptime
    ours = run_step("dark", ccd, calibrations={"dark": dark})
    ref = ccdproc.subtract_dark(ccd, dark, exposure_time="EXPTIME", exposure_unit=u.s, scale=True)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-5)
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-5)
    assert ours.header["CF_DKSCL"] == pytest.approx(60.0 / dark_exptime)


def test_dark_temperature_scaling_doubles_every_doubling_temperature():
    ccd = CCDData(np.zeros((4, 4), np.float32), unit="adu")
    dark = CCDData(np.full((4, 4), 10.0, np.float32), unit="adu",
                   header=fits.Header({"EXPTIME": 60.0, "CCD-TEMP": -26.0}))
    inst = fake_instrument(caldb={"dark": {"temperature_law": {"law": "doubling", "doubling_c": 6.0}}})
    out = run_step("dark", ccd, calibrations={"dark": dark}, instrument=inst,
                   meta=make_meta(shape=(4, 4), temperature=-20.0))
    np.testing.assert_allclose(out.data, -20.0)
    assert (out.header["CF_DKLAW"], out.header["CF_DKLPR"]) == ("doubling", 6.0)


def test_flat_matches_ccdproc_and_masks_low_pixels():
    ccd = with_error(CCDData(RNG.normal(1000, 30, (30, 30)).astype(np.float32), unit="adu"), 30.0)
    flat = with_error(CCDData(RNG.normal(1.0, 0.05, (30, 30)).astype(np.float32), unit="adu"), 0.01)
    flat.data[3, 4] = 0.0
    flat.data[5, 6] = 0.05
    ours = run_step("flat", ccd, calibrations={"flat": flat}, params={"min_value": 0.2})
    ref = ccdproc.flat_correct(ccd, flat, norm_value=1.0)
    good = flat.data >= 0.2
    np.testing.assert_allclose(ours.data[good], ref.data[good], rtol=1e-5)
    np.testing.assert_allclose(ours.uncertainty.array[good], ref.uncertainty.array[good], rtol=1e-4)
    assert ours.mask[3, 4] and ours.mask[5, 6] and ours.mask.sum() == 2
    assert ours.data[3, 4] == ccd.data[3, 4]  # masked, not divided
    assert ours.header["CF_FLMSK"] == 2


def test_zero_flat_is_refused():
    ccd = CCDData(np.ones((5, 5), np.float32), unit="adu")
    with pytest.raises(UnprocessableInputError, match="median is 0"):
        run_step("flat", ccd, calibrations={"flat": CCDData(np.zeros((5, 5), np.float32), unit="adu")})


def test_shape_mismatch_is_refused():
    ccd = raw_frame()
    with pytest.raises(UnprocessableInputError, match="does not match the frame"):
        run_step("bias", ccd, calibrations={"bias": CCDData(np.zeros((3, 3), np.float32), unit="adu")})


def test_recipe_writes_status_history_and_timing(manager):
    config = build(manager, instrument="generic", params=["dark.skip=true"])
    ccd = raw_frame()
    bias = run_step("trim", run_step("overscan", raw_frame(level=1000.0)))
    # generic has no gain or read noise of its own: this camera's header gives them
    context = StepContext(make_meta(shape=ccd.shape, gain=1.5, read_noise=5.0), config.instrument)
    flat = CCDData(np.ones(bias.shape, np.float32), unit="adu")
    out = run_recipe(manager, ccd, config, context, {"bias": bias, "flat": flat, "dark": None})
    assert out.shape == (40, 60)
    for key in ("CF_OVERS", "CF_TRIM", "CF_BIAS", "CF_FLAT"):
        assert out.header[key] == "DONE"
    assert out.header["CF_DARK"] == "SKIPPED"
    assert set(context.timings) == {"saturation", "overscan", "trim", "uncertainty", "bias", "flat", "gain",
                                    "cosmicray"}
    assert out.header["CF_LINEA"] == "SKIPPED" and out.header["CF_BPM"] == "SKIPPED"
    history = "\n".join(str(h) for h in out.header["HISTORY"])
    assert "ccdflow dark: skipped (skip requested in config)" in history
    assert "ccdflow bpm: skipped (no bpm available)" in history
    assert "ccdflow linearity: skipped (no linearity correction configured" in history
    # running again: everything already applied is skipped, nothing is applied twice
    again = run_recipe(manager, out, config, StepContext(context.meta, config.instrument),
                       {"bias": bias, "flat": flat})
    np.testing.assert_array_equal(again.data, out.data)


def test_missing_calibration_is_a_clear_error(manager):
    config = build(manager, instrument="generic")
    context = StepContext(make_meta(shape=(40, 68), gain=1.5, read_noise=5.0), config.instrument)
    with pytest.raises(UnprocessableInputError, match="needs calibration bias"):
        run_recipe(manager, raw_frame(), config, context, {})


def test_frame_without_overscan_skips_overscan(manager):
    config = build(manager, instrument="generic")
    ccd = CCDData(np.ones((10, 10), np.float32), unit="adu")
    context = StepContext(make_meta(frame_type="bias", shape=(10, 10)), config.instrument)
    out = run_recipe(manager, ccd, config, context, {})
    assert out.header["CF_OVERS"] == "SKIPPED" and out.header["CF_TRIM"] == "DONE"


def test_uncertainty_matches_ccdproc_create_deviation():
    ccd = CCDData(RNG.normal(200, 40, (30, 30)).astype(np.float32), unit="adu")
    ccd.data[0, 0] = -50.0  # negative signal: no Poisson term, as ccdproc with disregard_nan
    meta = make_meta(shape=ccd.shape, gain=1.5, read_noise=6.0)
    ours = run_step("uncertainty", ccd, meta=meta)
    ref = ccdproc.create_deviation(ccd, gain=1.5 * u.electron / u.adu, readnoise=6.0 * u.electron,
                                   disregard_nan=True)
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-5)


def test_uncertainty_adds_to_what_the_frame_already_carries():
    ccd = with_error(CCDData(np.full((4, 4), 100.0, np.float32), unit="adu"), 3.0)
    ours = run_step("uncertainty", ccd, meta=make_meta(shape=(4, 4), gain=1.0, read_noise=0.0))
    np.testing.assert_allclose(ours.uncertainty.array, np.sqrt(100.0 + 9.0), rtol=1e-6)


def test_gain_matches_ccdproc_gain_correct():
    ccd = with_error(CCDData(RNG.normal(200, 40, (30, 30)).astype(np.float32), unit="adu"), 2.0)
    meta = make_meta(shape=ccd.shape, gain=1.5)
    ours = run_step("gain", ccd, meta=meta)
    ref = ccdproc.gain_correct(ccd, 1.5 * u.electron / u.adu)
    np.testing.assert_allclose(ours.data, ref.data, rtol=1e-6)
    np.testing.assert_allclose(ours.uncertainty.array, ref.uncertainty.array, rtol=1e-6)
    assert str(ours.unit) == "electron" and ours.header["CF_GAINV"] == 1.5
    twice = run_step("gain", ours, meta=meta)  # the recipe never applies a step twice
    assert twice.header["CF_GAIN"] == "SKIPPED" and str(twice.unit) == "electron"
    np.testing.assert_array_equal(twice.data, ours.data)
    with pytest.raises(UnprocessableInputError, match="gain expects ADU data"):
        run_step("gain", make_ccd(ours.data, unit="electron"), meta=meta)  # nor does the step

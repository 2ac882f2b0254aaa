"""Linearity step: the configured polynomial undoes a known camera response; uncertainty scaled."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.nddata import CCDData, StdDevUncertainty
from numpy.polynomial import polynomial as P

from ccdflow.plugins.steps.linearity import linearize
from ccdflow.testing import fake_instrument, run_step


def linearity(ccd, configured=(), **params):
    """The linearity step on a camera whose instrument configuration has ``configured``."""
    return run_step("linearity", ccd, params=params,
                    instrument=fake_instrument(linearity=list(configured)))


def test_polynomial_inverts_a_known_camera_response():
    true = np.linspace(0, 50000, 2001)
    response = true - 1.5e-6 * true**2 + 4e-12 * true**3  # a camera compressing bright signal
    coefficients = P.polyfit(response, true, 5).tolist()  # what an observatory would put in the config
    raw = CCDData(response.reshape(23, 87).astype(np.float32), unit="adu")
    out = linearity(raw, coefficients)
    np.testing.assert_allclose(out.data.ravel(), true, atol=0.5)
    assert out.header["CF_LINC"].startswith(f"{coefficients[0]:.6g},")


def test_float32_horner_matches_float64_polyval():
    x = np.random.default_rng(2).uniform(0, 60000, (50, 50)).astype(np.float32)
    c = [1.0, 1.001, 2e-7, -1e-12]
    out = linearize(x, c)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, P.polyval(x.astype(np.float64), c), rtol=2e-6)


def test_uncertainty_scales_with_the_slope_and_mask_is_kept():
    x = np.array([[0.0, 1000.0, 20000.0]], np.float32)
    ccd = CCDData(x, unit="adu", mask=np.array([[False, True, False]]),
                  uncertainty=StdDevUncertainty(np.full(x.shape, 10.0, np.float32)))
    out = linearity(ccd, [0.0, 1.0, 1e-5])
    np.testing.assert_allclose(out.uncertainty.array, 10.0 * (1 + 2e-5 * x), rtol=1e-6)
    assert out.mask.tolist() == [[False, True, False]]
    params_override = linearity(ccd, [], coefficients=[0.0, 2.0])
    np.testing.assert_allclose(params_override.data, 2 * x)


@pytest.mark.parametrize("coefficients", [[], [0.0, 1.0]])
def test_no_correction_configured_is_no_work(coefficients):
    out = linearity(CCDData(np.ones((2, 2), np.float32), unit="adu"), coefficients)
    assert out.header["CF_LINEA"] == "SKIPPED"
    assert "ccdflow linearity: skipped (no linearity correction" in str(out.header["HISTORY"])

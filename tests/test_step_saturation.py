"""Saturation step: threshold and column growth on arrays, the simulator's saturated truth, and
the mask surviving trim."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.instrument import Instrument
from ccdflow.plugins.steps.saturation import saturation_mask
from ccdflow.testing import run_step


def saturation(ccd, instrument=None, **params):
    """With the instrument's configured parameters (generic: keyword SATURATE) under ``params``."""
    return run_step("saturation", ccd, params=params, instrument=instrument)


def test_threshold_is_inclusive_and_grows_along_columns_only():
    data = np.zeros((9, 5), np.float32)
    data[4, 2] = 100.0
    data[0, 0] = 99.9
    np.testing.assert_array_equal(np.argwhere(saturation_mask(data, 100.0)), [[4, 2]])
    grown = saturation_mask(data, 100.0, grow_columns=2)
    assert grown[2:7, 2].all() and grown.sum() == 5


def test_level_from_parameter_keyword_or_instrument():
    ccd = CCDData(np.array([[10.0, 50.0, 60.0]], np.float32), unit="adu",
                  header=fits.Header({"SATURATE": 50.0}))
    assert saturation(ccd).mask.tolist() == [[False, True, True]]  # generic reads SATURATE
    assert saturation(ccd, level=55.0).header["CF_NSAT"] == 1
    out = saturation(ccd, keyword="NOPE")  # absent keyword: the instrument's 65535
    assert out.header["CF_SATLV"] == 65535 and not out.mask.any()
    ccd.header["SATURATE"] = "n/a"
    with pytest.raises(UnprocessableInputError, match=r"keyword SATURATE, found 'n/a'"):
        saturation(ccd, keyword="SATURATE")


def test_no_level_known_is_no_work():
    inst = Instrument.model_validate({"name": "nosat", "header": {"frame_type": {}, "exposure_time": {},
                                                                  "date_obs": {}}})
    out = saturation(CCDData(np.zeros((2, 2), np.float32), unit="adu"), inst)
    assert out.header["CF_SATUR"] == "SKIPPED"
    assert "ccdflow saturation: skipped (no saturation level" in str(out.header["HISTORY"])


def test_existing_mask_and_uncertainty_are_carried():
    from astropy.nddata import StdDevUncertainty

    mask = np.array([[True, False]])
    ccd = CCDData(np.array([[1.0, 7e4]], np.float32), unit="adu", mask=mask,
                  uncertainty=StdDevUncertainty(np.array([[2.0, 3.0]], np.float32)))
    out = saturation(ccd)
    assert out.mask.tolist() == [[True, True]] and out.header["CF_NSAT"] == 1
    np.testing.assert_array_equal(out.uncertainty.array, [[2.0, 3.0]])


def test_simulated_saturated_stars_masked_and_mask_survives_trim(tmp_path):
    from ccdflow.framework.io.fitsio import read_ccd
    from ccdflow.simulator import SimulationSpec, simulate_night

    spec = SimulationSpec(shape=(96, 96), overscan=16, n_bias=0, n_dark=0, n_flat=0, filters=("V",),
                          n_science=1, n_saturated_stars=2, seed=4)
    night = simulate_night(tmp_path, spec)
    (raw,) = sorted(night.raw_dir.glob("*sci*.fits"))
    truth = fits.getdata(night.truth_dir / f"sat_{raw.stem}.fits")
    full_well = (truth & 1) > 0
    assert full_well.sum() > 10

    ccd = read_ccd(raw)
    out = saturation(ccd, grow_columns=0)
    assert out.header["CF_SATLV"] == spec.saturation  # from the SATURATE card
    data_area = out.mask[:, : spec.shape[1]]
    assert data_area[full_well].all()  # every full-well pixel reads exactly the saturation level
    assert (data_area & ~full_well).sum() == 0
    grown = saturation(ccd, grow_columns=3).mask[:, : spec.shape[1]]
    assert grown.sum() > data_area.sum() and grown[full_well].all()

    trimmed = run_step("trim", out)
    assert trimmed.shape == spec.shape
    np.testing.assert_array_equal(trimmed.mask, full_well)

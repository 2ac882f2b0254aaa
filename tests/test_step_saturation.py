"""Saturation step: threshold and column growth on arrays, the simulator's saturated truth, and
the mask surviving trim."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.config import build
from ccdflow.framework.errors import NoWorkError, UnprocessableInputError
from ccdflow.framework.instrument import Instrument
from ccdflow.framework.step import StepContext
from ccdflow.plugins.steps.saturation import SaturationMasker, SaturationParams, saturation_mask
from tests.conftest import make_meta


def run_step(manager, ccd, instrument=None, **params):
    """With the generic instrument's configured parameters (keyword SATURATE) under ``params``."""
    config = build(manager, instrument="generic")
    merged = config.params("saturation", params) if instrument is None else SaturationParams(**params)
    context = StepContext(make_meta(shape=ccd.shape), instrument or config.instrument)
    return SaturationMasker().run(ccd, merged, {}, context)


def test_threshold_is_inclusive_and_grows_along_columns_only():
    data = np.zeros((9, 5), np.float32)
    data[4, 2] = 100.0
    data[0, 0] = 99.9
    np.testing.assert_array_equal(np.argwhere(saturation_mask(data, 100.0)), [[4, 2]])
    grown = saturation_mask(data, 100.0, grow_columns=2)
    assert grown[2:7, 2].all() and grown.sum() == 5


def test_level_from_parameter_keyword_or_instrument(manager):
    ccd = CCDData(np.array([[10.0, 50.0, 60.0]], np.float32), unit="adu",
                  header=fits.Header({"SATURATE": 50.0}))
    assert run_step(manager, ccd).mask.tolist() == [[False, True, True]]  # generic reads SATURATE
    assert run_step(manager, ccd, level=55.0).header["CF_NSAT"] == 1
    out = run_step(manager, ccd, keyword="NOPE")  # absent keyword: the instrument's 65535
    assert out.header["CF_SATLV"] == 65535 and not out.mask.any()
    ccd.header["SATURATE"] = "n/a"
    with pytest.raises(UnprocessableInputError, match=r"keyword SATURATE, found 'n/a'"):
        run_step(manager, ccd, keyword="SATURATE")


def test_no_level_known_is_no_work(manager):
    inst = Instrument.model_validate({"name": "nosat", "header": {"frame_type": {}, "exposure_time": {},
                                                                  "date_obs": {}}})
    with pytest.raises(NoWorkError, match="no saturation level"):
        run_step(manager, CCDData(np.zeros((2, 2), np.float32), unit="adu"), inst)


def test_existing_mask_and_uncertainty_are_carried(manager):
    from astropy.nddata import StdDevUncertainty

    mask = np.array([[True, False]])
    ccd = CCDData(np.array([[1.0, 7e4]], np.float32), unit="adu", mask=mask,
                  uncertainty=StdDevUncertainty(np.array([[2.0, 3.0]], np.float32)))
    out = run_step(manager, ccd)
    assert out.mask.tolist() == [[True, True]] and out.header["CF_NSAT"] == 1
    np.testing.assert_array_equal(out.uncertainty.array, [[2.0, 3.0]])


def test_simulated_saturated_stars_masked_and_mask_survives_trim(manager, tmp_path):
    from ccdflow.framework.fitsio import read_ccd
    from ccdflow.simulator import SimulationSpec, simulate_night

    spec = SimulationSpec(shape=(96, 96), overscan=16, n_bias=0, n_dark=0, n_flat=0, filters=("V",),
                          n_science=1, n_saturated_stars=2, seed=4)
    night = simulate_night(tmp_path, spec)
    (raw,) = sorted(night.raw_dir.glob("*sci*.fits"))
    truth = fits.getdata(night.truth_dir / f"sat_{raw.stem}.fits")
    full_well = (truth & 1) > 0
    assert full_well.sum() > 10

    ccd = read_ccd(raw)
    out = run_step(manager, ccd, grow_columns=0)
    assert out.header["CF_SATLV"] == spec.saturation  # from the SATURATE card
    data_area = out.mask[:, : spec.shape[1]]
    assert data_area[full_well].all()  # every full-well pixel reads exactly the saturation level
    assert (data_area & ~full_well).sum() == 0
    grown = run_step(manager, ccd, grow_columns=3).mask[:, : spec.shape[1]]
    assert grown.sum() > data_area.sum() and grown[full_well].all()

    config = build(manager, instrument="generic")
    trim = manager.step("trim")
    trimmed = trim().run(out, trim.Params(), {}, StepContext(make_meta(shape=ccd.shape), config.instrument))
    assert trimmed.shape == spec.shape
    np.testing.assert_array_equal(trimmed.mask, full_well)

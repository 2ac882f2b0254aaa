"""Bad-pixel-mask step: bits ORed into the mask, optional calibration SKIPPED when absent,
shape and type mismatches refused; on the simulator's BPM truth through the recipe."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.recipe import calibration_needs, needed_calibrations, run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.plugins.steps.bpm import bad_pixels
from ccdflow.testing import run_step

BPM = np.array([[0, 1, 2], [4, 5, 0]], np.uint8)


def master(bits=BPM, mtype="bpm"):
    return CCDData(bits, unit="adu", header=fits.Header({"CF_MTYPE": mtype}))


def test_bits_select_which_defects_mask():
    assert bad_pixels(BPM, 7).tolist() == [[False, True, True], [True, True, False]]
    assert bad_pixels(BPM, 1).tolist() == [[False, True, False], [False, True, False]]
    assert bad_pixels(BPM.astype(np.int16), 6).tolist() == [[False, False, True], [True, True, False]]


def test_bpm_is_ored_into_the_existing_mask():
    ccd = CCDData(np.ones((2, 3), np.float32), unit="adu", mask=np.array([[True, False, False]] * 2))
    out = run_step("bpm", ccd, calibrations={"bpm": master()}, params={"bits": 1})
    assert out.mask.tolist() == [[True, True, False], [True, True, False]]
    assert out.header["CF_NBPM"] == 2 and out.header["CF_BPMBT"] == 1
    np.testing.assert_array_equal(out.data, ccd.data)
    float_master = master(BPM.astype(np.float32))  # as read back by read_product
    assert run_step("bpm", ccd, calibrations={"bpm": float_master}).header["CF_NBPM"] == 4


def test_missing_bpm_is_skipped_not_an_error():
    ccd = CCDData(np.ones((2, 3), np.float32), unit="adu")
    for calibrations in ({"bpm": None}, {}):  # optional: asked for, but no error without it
        out = run_step("bpm", ccd, calibrations=calibrations)
        assert out.header["CF_BPM"] == "SKIPPED" and out.mask is None
        assert "ccdflow bpm: skipped (no bpm available)" in str(out.header["HISTORY"])


def test_recipe_asks_for_the_bpm_but_can_do_without(manager):
    config = build(manager, instrument="generic")
    assert "bpm" in needed_calibrations(config, "science")
    assert calibration_needs(config, "science").optional == ("bpm",)
    assert "bpm" not in needed_calibrations(config, "bias")


def test_shape_and_type_mismatch_are_refused():
    ccd = CCDData(np.ones((3, 3), np.float32), unit="adu")
    with pytest.raises(UnprocessableInputError, match=r"BPM shape \(2, 3\) does not match the frame"):
        run_step("bpm", ccd, calibrations={"bpm": master()})
    with pytest.raises(UnprocessableInputError, match=r"keyword CF_MTYPE, found 'flat'"):
        run_step("bpm", CCDData(np.ones((2, 3), np.float32), unit="adu"),
                 calibrations={"bpm": master(mtype="flat")})


def test_simulated_bpm_truth_masks_the_reduced_frame(manager, tmp_path):
    from ccdflow.framework.headers.scan import scan_paths
    from ccdflow.framework.io.fitsio import read_ccd
    from ccdflow.simulator import SimulationSpec, simulate_night

    spec = SimulationSpec(shape=(64, 64), overscan=8, n_bias=0, n_dark=0, n_flat=0, filters=("V",),
                          n_science=1, hot_pixel_fraction=0.01, seed=9)
    night = simulate_night(tmp_path, spec)
    truth = fits.getdata(night.truth_dir / "bpm.fits")
    assert (truth & 1).any() and (truth & 2).any()
    (meta,), _ = scan_paths(sorted(night.raw_dir.glob("*sci*.fits")), manager)
    config = build(manager, instrument="generic", params=["bias.skip=true", "dark.skip=true",
                                                          "flat.skip=true", "cosmicray.skip=true"])
    context = StepContext(meta, config.instrument)
    out = run_recipe(manager, read_ccd(meta.path), config, context, {"bpm": master(truth)})
    assert context.statuses["bpm"] == "DONE"
    assert out.mask[truth > 0].all()
    hot_only = run_recipe(manager, read_ccd(meta.path),
                          build(manager, instrument="generic", params=["bias.skip=true", "dark.skip=true",
                                "flat.skip=true", "cosmicray.skip=true", "bpm.bits=1"]),
                          StepContext(meta, config.instrument), {"bpm": master(truth)})
    assert hot_only.header["CF_NBPM"] == int(((truth & 1) > 0).sum())

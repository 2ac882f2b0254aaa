"""DQ bits in products: each masking step sets its own bit, the bits survive the steps that only
pass the mask on (and a plugin step that returns a boolean mask), the written MASK carries them
with the table in its header, ``mask != 0`` is the boolean view, and products written before the
bits still read. Cosmic rays beside flagged pixels are found, flagged pixels are never cosmic
rays, and UNCERT is astroscrappy's variance by default."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.calibrations.bpm import HOT, LOW
from ccdflow.framework.io.fitsio import read_product
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.testing import make_meta, run_step

SHAPE = (64, 64)


def frame(sky: float = 300.0, seed: int = 1) -> CCDData:
    rng = np.random.default_rng(seed)
    data = rng.normal(sky, np.sqrt(sky + 25.0), SHAPE).astype(np.float32)
    std = np.full(SHAPE, np.sqrt(sky + 25.0), np.float32)
    return CCDData(data, unit="electron", uncertainty=StdDevUncertainty(std))


def bpm_master() -> CCDData:
    bpm = np.zeros(SHAPE, np.uint8)
    bpm[10, 10] = HOT
    bpm[20, 20] = LOW
    bpm[30, 30] = HOT | LOW
    return CCDData(bpm, unit="adu", header=fits.Header({"CF_MTYPE": "bpm"}))


def test_each_step_sets_its_bit_and_the_file_carries_them(tmp_path):
    ccd = frame()
    ccd.data[5, 5] = 70000.0  # saturated (raw level 65535 in the generic instrument)
    meta = make_meta(shape=SHAPE, gain=1.0, read_noise=5.0)
    ccd = run_step("saturation", ccd, meta=meta, params={"level": 65535.0})
    ccd = run_step("bpm", ccd, meta=meta, calibrations={"bpm": bpm_master()})
    flat = CCDData(np.ones(SHAPE, np.float32), unit="adu")
    flat.data[40, 41] = 0.05  # too low: not divided
    ccd = run_step("flat", ccd, meta=meta, calibrations={"flat": flat})
    ccd.data[50, 50] += 5000.0  # a cosmic ray
    ccd = run_step("cosmicray", ccd, meta=meta)
    bits = dq.of(ccd)
    assert bits[5, 5] == dq.SATURATED
    assert bits[10, 10] == dq.HOT and bits[20, 20] == dq.LOW and bits[30, 30] == dq.HOT | dq.LOW
    assert bits[40, 41] == dq.FLAT_LOW
    assert bits[50, 50] == dq.COSMIC_RAY
    assert ccd.header["CF_CRVAR"] is True  # UNCERT^2 was astroscrappy's variance
    write_ccd(ccd, tmp_path / "p.fits")
    with fits.open(tmp_path / "p.fits") as hdul:
        stored, header = hdul["MASK"].data, hdul["MASK"].header
        assert stored.dtype.kind == "i" and "BZERO" not in header
        assert header["CF_DQ8"] == "SATURATED" and header["CF_DQ16"] == "COSMIC"
        assert all(f"CF_DQ{bit}" in header for bit in dq.TABLE)
        np.testing.assert_array_equal(stored, bits)
    back = read_product(tmp_path / "p.fits")
    np.testing.assert_array_equal(back.flags, bits)
    np.testing.assert_array_equal(back.mask, stored != 0)  # astropy's boolean view


def test_steps_that_pass_the_mask_on_keep_the_bits():
    ccd = frame()
    ccd.data[5, 5] = 70000.0
    meta = make_meta(shape=SHAPE, gain=2.0, read_noise=5.0)
    ccd = CCDData(ccd.data / 2, unit="adu", uncertainty=StdDevUncertainty(ccd.uncertainty.array / 2))
    ccd = run_step("saturation", ccd, meta=meta, params={"level": 30000.0})
    ccd = run_step("gain", ccd, meta=meta)
    assert dq.of(ccd)[5, 5] == dq.SATURATED


def test_a_plugin_step_returning_a_boolean_mask_keeps_the_reasons_before_it():
    from ccdflow.framework.engine.step import Step, StepParams

    class Grower(Step[StepParams]):
        name = "grower"
        Params = StepParams
        description = "ORs a boolean mask into the frame's mask (as older plugins do)."

        def run(self, ccd, params, calibrations, context):
            mask = np.asarray(ccd.mask, bool).copy()
            mask[0, 0] = True
            return CCDData(ccd.data, unit=ccd.unit, header=ccd.header, mask=mask)

    ccd = frame()
    ccd.data[5, 5] = 70000.0
    ccd = run_step("saturation", ccd, params={"level": 65535.0}, meta=make_meta(shape=SHAPE))
    out = run_step(Grower, ccd, meta=make_meta(shape=SHAPE))
    bits = dq.of(out)
    assert bits[5, 5] == dq.SATURATED and bits[0, 0] == dq.MASKED
    assert np.count_nonzero(bits) == 2


def test_a_product_written_before_the_bits_reads_as_masked(tmp_path):
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.zeros(SHAPE, np.float32), name="SCI"),
                         fits.ImageHDU(np.eye(64, dtype=np.uint8), name="MASK")])
    hdul.writeto(tmp_path / "old.fits")
    back = read_product(tmp_path / "old.fits")
    assert back.mask.dtype == bool and back.mask.sum() == 64
    assert set(np.unique(back.flags)) == {0, dq.MASKED}


def test_raw_nan_pixels_are_flagged_non_finite(tmp_path):
    from ccdflow.framework.io.fitsio import read_ccd

    data = np.ones(SHAPE, np.float32)
    data[3, 4] = np.nan
    fits.writeto(tmp_path / "raw.fits", data)
    ccd = read_ccd(tmp_path / "raw.fits")
    assert dq.of(ccd)[3, 4] == dq.NON_FINITE and ccd.mask.sum() == 1


def test_a_master_with_no_data_flags_the_product_no_data():
    ccd = frame()
    bias = CCDData(np.zeros(SHAPE, np.float32), unit="adu", mask=np.zeros(SHAPE, bool))
    bias.mask[7, 8] = True
    out = run_step("bias", ccd, meta=make_meta(shape=SHAPE), calibrations={"bias": bias})
    assert dq.of(out)[7, 8] == dq.NO_DATA and dq.of(out).sum() == dq.NO_DATA


@pytest.mark.parametrize("bit, gap", [(dq.HOT, 1), (dq.LOW, 1), (dq.SATURATED, 3)])
def test_hits_beside_flagged_pixels_are_found_and_flagged_pixels_are_not_hits(bit, gap):
    """astroscrappy grows its inmask by a pixel (saturated stars by four): a hit beside a
    flagged pixel was never found. The step replaces flagged pixels by their neighbours instead;
    only a hit touching a saturated pixel is left (it cannot be told from the star's edge)."""
    ccd = frame(seed=4)
    flags = np.zeros(SHAPE, dq.DTYPE)
    for y, x in [(15, 15), (15, 40), (40, 15), (45, 45)]:
        flags[y, x - 1:x + 2] = bit  # a short bad segment...
        ccd.data[y, x - 1:x + 2] = {dq.HOT: 20000.0, dq.LOW: 0.0, dq.SATURATED: 70000.0}[bit]
        ccd.data[y + gap, x] += 3000.0  # ...with a hit right beside it
    ccd = CCDData(ccd.data, unit="electron", uncertainty=ccd.uncertainty, mask=flags != 0, flags=flags)
    out = run_step("cosmicray", ccd, meta=make_meta(shape=SHAPE, gain=1.0, read_noise=5.0))
    bits = dq.of(out)
    for y, x in [(15, 15), (15, 40), (40, 15), (45, 45)]:
        assert bits[y + gap, x] == dq.COSMIC_RAY
        assert (bits[y, x - 1:x + 2] == bit).all()  # kept, never called a cosmic ray
    assert out.header["CF_CRREP"] == 12


def test_filled_replaces_only_bad_pixels_by_their_neighbours():
    from ccdflow.plugins.steps.cosmicray import filled

    data = np.arange(100, dtype=np.float32).reshape(10, 10)
    bad = np.zeros((10, 10), bool)
    bad[4:7, 4:7] = True  # 3x3: the centre needs two rounds
    out = filled(data, bad)
    np.testing.assert_array_equal(out[~bad], data[~bad])
    assert np.isfinite(out).all() and abs(out[5, 5] - data[5, 5]) < 10


def test_a_group_touching_a_saturated_pixel_is_not_a_cosmic_ray():
    """The edge of a saturated star, its core replaced, looks like a hit: groups of flags that
    touch a saturated pixel are dropped (tests/test_cosmicray_truth.py: 155 of 679 star-core
    pixels flagged without this, all within 4 px of saturated pixels)."""
    from ccdflow.plugins.steps.cosmicray import off_saturated_edges

    crmask = np.zeros((10, 10), bool)
    crmask[2, 2:4] = True  # touches the saturated pixel at (1, 1) diagonally
    crmask[6, 6] = True
    saturated = np.zeros((10, 10), bool)
    saturated[1, 1] = True
    kept = off_saturated_edges(crmask, saturated)
    assert not kept[2, 2:4].any() and kept[6, 6]

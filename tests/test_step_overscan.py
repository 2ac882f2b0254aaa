"""The overscan step writes frame minus model straight into a new array for one amplifier and
subtracts amplifier by amplifier from a copy for several; neither touches the input frame."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.testing import fake_instrument, run_step

RNG = np.random.default_rng(11)


def test_one_amplifier_subtracts_row_medians_and_leaves_input():
    data = RNG.normal(1000, 5, (40, 68)).astype(np.float32) + np.arange(40, dtype=np.float32)[:, None]
    ccd = CCDData(data.copy(), unit="adu", header=fits.Header({"BIASSEC": "[61:68,1:40]",
                                                              "TRIMSEC": "[1:60,1:40]"}))
    out = run_step("overscan", ccd)  # the generic instrument: sections from BIASSEC/TRIMSEC
    expected = data - np.median(data[:, 60:], axis=1).astype(np.float32)[:, None]
    np.testing.assert_array_equal(out.data, expected)
    np.testing.assert_array_equal(ccd.data, data)
    assert out.data is not ccd.data and out.header is not ccd.header and "CF_OSA" not in ccd.header


def test_two_amplifiers_each_their_own_overscan():
    data = RNG.normal(500, 3, (40, 76)).astype(np.float32)
    data[:, 38:] += 200  # the right amplifier sits 200 ADU higher, overscan included
    ccd = CCDData(data.copy(), unit="adu", header=fits.Header())
    camera = fake_instrument(geometry={"amplifiers": [
        {"name": "L", "overscan": "[1:8,1:40]", "trim": "[9:38,1:40]"},
        {"name": "R", "overscan": "[69:76,1:40]", "trim": "[39:68,1:40]"}]})
    out = run_step("overscan", ccd, instrument=camera)
    left = data[:, 8:38] - np.median(data[:, :8], axis=1).astype(np.float32)[:, None]
    right = data[:, 38:68] - np.median(data[:, 68:], axis=1).astype(np.float32)[:, None]
    np.testing.assert_array_equal(out.data[:, 8:38], left)
    np.testing.assert_array_equal(out.data[:, 38:68], right)
    np.testing.assert_array_equal(ccd.data, data)
    assert abs(out.header["CF_OSR"] - out.header["CF_OSL"] - 200) < 2

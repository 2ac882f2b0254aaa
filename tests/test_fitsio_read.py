"""read_ccd reads 16-bit integer images itself (one pass to float32); every other layout goes
through astropy. Both must give astropy's values."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io import fitsio
from ccdflow.framework.io.fitsio import read_ccd


def _raw(dtype) -> np.ndarray:
    info = np.iinfo(dtype)
    values = np.random.default_rng(5).integers(info.min, info.max, (64, 48), endpoint=True)
    values[0, :2] = info.min, info.max
    return values.astype(dtype)


@pytest.mark.parametrize("dtype", [np.uint16, np.int16])
@pytest.mark.parametrize("mef", [False, True])
def test_int16_fast_path_equals_astropy(tmp_path, monkeypatch, dtype, mef):
    data = _raw(dtype)
    path = tmp_path / "raw.fits"
    if mef:
        fits.HDUList([fits.PrimaryHDU(header=fits.Header({"TELESCOP": "T"})),
                      fits.ImageHDU(np.zeros((3, 3), np.int16), name="JUNK"),
                      fits.ImageHDU(data, name="CCD")]).writeto(path)
    else:
        fits.PrimaryHDU(data).writeto(path)
    hdu = "CCD" if mef else 0
    calls = []
    original = fitsio._read_int16
    monkeypatch.setattr(fitsio, "_read_int16", lambda *a: calls.append(1) or original(*a))
    ccd = read_ccd(path, hdu=hdu)
    assert calls and ccd.data.dtype == np.float32 and ccd.mask is None
    np.testing.assert_array_equal(ccd.data, fits.getdata(path, hdu).astype(np.float32))
    assert "BZERO" not in ccd.header
    if mef:
        assert ccd.header["TELESCOP"] == "T"


def test_other_layouts_match_astropy(tmp_path):
    """gzip, BLANK, BSCALE and float images take astropy's path with the same result."""
    data = _raw(np.int16)
    plain = tmp_path / "plain.fits"
    fits.PrimaryHDU(data).writeto(plain)
    (tmp_path / "raw.fits.gz").write_bytes(gzip.compress(plain.read_bytes()))
    np.testing.assert_array_equal(read_ccd(tmp_path / "raw.fits.gz").data, data.astype(np.float32))

    blank = fits.PrimaryHDU(data)
    blank.header["BLANK"] = int(data[5, 5])
    blank.writeto(tmp_path / "blank.fits")
    assert fitsio._read_int16(tmp_path / "blank.fits", fits.open(tmp_path / "blank.fits")[0]) is None
    ccd = read_ccd(tmp_path / "blank.fits")
    assert ccd.mask is not None and ccd.mask[5, 5] and np.isnan(ccd.data[5, 5])

    floats = np.random.default_rng(1).normal(size=(8, 9)).astype(np.float32)
    floats[2, 3] = np.inf
    fits.PrimaryHDU(floats).writeto(tmp_path / "float.fits")
    ccd = read_ccd(tmp_path / "float.fits")
    assert ccd.mask.sum() == 1 and ccd.header["CF_NBAD"] == 1


def test_truncated_int16_is_refused(tmp_path):
    path = tmp_path / "raw.fits"
    fits.PrimaryHDU(_raw(np.uint16)).writeto(path)
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) - 2880])
    with pytest.raises(UnprocessableInputError, match="truncated"):
        read_ccd(path)

"""read_product's float32 planes from the file's bytes (fitsio._read_float32, used with
``content=``): astropy's values bit for bit, native float32; files it does not handle (BITPIX -64,
BSCALE'd, gzip'ed) are read by astropy as before."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.io import fitsio
from ccdflow.framework.io.fitsio import read_product
from ccdflow.framework.io.fitswrite import write_ccd

SHAPE = (70, 90)


def product(seed: int = 0) -> CCDData:
    rng = np.random.default_rng(seed)
    data = rng.normal(1000, 30, SHAPE).astype(np.float32)
    data[0, 0], data[1, 1], data[2, 2], data[3, 3] = np.nan, np.inf, -0.0, 1e-42  # subnormal
    std = rng.uniform(1, 3, SHAPE).astype(np.float32)
    flags = np.zeros(SHAPE, dq.DTYPE)
    flags[0, 0], flags[5, 6] = dq.NON_FINITE, dq.HOT
    ccd = CCDData(data, unit="electron", mask=flags != 0, uncertainty=StdDevUncertainty(std))
    ccd.flags = flags
    ccd.header["OBJECT"] = "test"
    return ccd


def astropy_planes(path: Path) -> tuple[np.ndarray, np.ndarray | None]:
    with fits.open(path) as hdul:
        uncert = np.array(hdul["UNCERT"].data, np.float32) if "UNCERT" in hdul else None
        return np.array(hdul["SCI"].data, np.float32), uncert


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and np.array_equal(np.ascontiguousarray(a, np.float32).view(np.uint32),
                                                 np.ascontiguousarray(b, np.float32).view(np.uint32))


@pytest.fixture
def fast_calls(monkeypatch) -> list[bool]:
    """Each _read_float32 call: True when it read the plane, False when it declined."""
    calls: list[bool] = []
    original = fitsio._read_float32

    def counting(source, hdu):
        got = original(source, hdu)
        calls.append(got is not None)
        return got

    monkeypatch.setattr(fitsio, "_read_float32", counting)
    return calls


def test_a_ccdflow_product_is_read_from_its_bytes_as_astropy_reads_it(tmp_path, fast_calls):
    path = tmp_path / "product.fits"
    written = product()
    write_ccd(written, path)
    fast = read_product(path, content=path.read_bytes())
    assert fast_calls == [True, True]  # SCI and UNCERT from the bytes
    slow = read_product(path)
    assert fast_calls == [True, True]  # without content: astropy alone
    sci, uncert = astropy_planes(path)
    for got in (fast, slow):
        for plane, want in ((got.data, sci), (got.uncertainty.array, uncert)):
            assert plane.dtype == np.float32 and plane.dtype.isnative
            assert plane.flags.c_contiguous and plane.flags.writeable and plane.flags.owndata is not None
            assert same_bits(plane, want)
    assert same_bits(fast.data, written.data) and same_bits(fast.uncertainty.array, written.uncertainty.array)
    assert np.array_equal(fast.flags, written.flags) and np.array_equal(fast.mask, written.flags != 0)
    assert fast.header["OBJECT"] == "test" and str(fast.unit) == "electron"
    fast.data[10, 10] = 5.0  # a copy of its own: writable, not a view of the bytes given


def write_with_astropy(path: Path, sci: fits.ImageHDU, uncert: fits.ImageHDU | None = None) -> Path:
    hdus = [fits.PrimaryHDU(header=fits.Header({"BUNIT": "adu"})), sci]
    if uncert is not None:
        hdus.append(uncert)
    fits.HDUList(hdus).writeto(path)
    return path


def test_bitpix_minus_64_falls_back_to_astropy(tmp_path, fast_calls):
    values = np.random.default_rng(1).normal(10, 1, SHAPE)  # float64: not float32's layout
    path = write_with_astropy(tmp_path / "f64.fits", fits.ImageHDU(values, name="SCI"),
                              fits.ImageHDU(np.abs(values).astype(np.float32), name="UNCERT"))
    got = read_product(path, content=path.read_bytes())
    assert fast_calls == [False, True]
    assert got.data.dtype == np.float32 and same_bits(got.data, values.astype(np.float32))
    assert same_bits(got.uncertainty.array, np.abs(values).astype(np.float32))


def test_a_bscaled_plane_falls_back_to_astropy(tmp_path, fast_calls):
    values = np.random.default_rng(2).uniform(0, 100, SHAPE).astype(np.float32)
    sci = fits.ImageHDU(values.copy(), name="SCI")
    sci.scale("int16", bscale=0.01, bzero=300.0)  # stored as integers: astropy rescales them
    path = write_with_astropy(tmp_path / "scaled.fits", sci)
    with fits.open(path) as hdul:
        assert hdul["SCI"].header["BITPIX"] == 16 and hdul["SCI"].header["BSCALE"] == 0.01
    got = read_product(path, content=path.read_bytes())
    assert fast_calls == [False] and got.uncertainty is None
    want, _ = astropy_planes(path)
    assert same_bits(got.data, want)
    assert np.allclose(got.data, values, atol=0.006)


def test_a_float32_plane_with_bscale_falls_back_to_astropy(tmp_path, fast_calls):
    values = np.arange(SHAPE[0] * SHAPE[1], dtype=np.float32).reshape(SHAPE)
    sci = fits.ImageHDU(values, name="SCI").header
    sci["BSCALE"] = 2.0  # written by hand: astropy would not leave a float plane scaled

    def block(b: bytes) -> bytes:
        return b + b"\0" * (-len(b) % 2880)

    path = tmp_path / "float_bscale.fits"
    path.write_bytes(fits.PrimaryHDU().header.tostring().encode() + sci.tostring().encode()
                     + block(values.astype(">f4").tobytes()))
    with fits.open(path) as hdul:
        assert hdul["SCI"].header["BITPIX"] == -32 and hdul["SCI"].header["BSCALE"] == 2.0
    got = read_product(path, content=path.read_bytes())
    assert fast_calls == [False]
    assert same_bits(got.data, values * 2)


def test_a_gzipped_product_is_read_from_its_decompressed_bytes(tmp_path, fast_calls):
    """A master given as a .fits.gz: its bytes were once handed to astropy still compressed
    ("No SIMPLE card found"), though astropy reads the same file by name."""
    plain = tmp_path / "p.fits"
    write_ccd(product(3), plain)
    packed = tmp_path / "p.fits.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    got = read_product(packed, content=packed.read_bytes())
    assert fast_calls == [True, True]
    by_name = read_product(packed)
    assert same_bits(got.data, by_name.data) and same_bits(got.data, read_product(plain).data)
    assert same_bits(got.uncertainty.array, by_name.uncertainty.array)
    from ccdflow.framework.builders.reduction import MasterRef

    ref = MasterRef.load("bias", packed)
    assert same_bits(ref.ccd.data, by_name.data)


def test_a_truncated_product_is_not_read_past_its_end(tmp_path):
    path = tmp_path / "p.fits"
    write_ccd(product(4), path)
    content = path.read_bytes()
    with fits.open(path) as hdul:
        sci = hdul["SCI"]
        assert fitsio._read_float32(content, sci) is not None
        cut = content[:sci.fileinfo()["datLoc"] + 100]
        assert fitsio._read_float32(cut, sci) is None  # astropy then says what is wrong

"""The product writer lays out FITS bytes itself and hashes them while writing: the file must be
byte for byte what astropy writes, and the returned checksum the SHA-256 of the file."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow.framework.io import fitswrite
from ccdflow.framework.io.fitsio import read_product, sha256_file
from ccdflow.framework.io.fitswrite import atomic_write, ccd_to_hdulist, write_ccd


def _ccd(shape: tuple[int, int], *, mask: bool, uncertainty: bool) -> CCDData:
    rng = np.random.default_rng(3)
    data = rng.normal(100, 10, shape).astype(np.float32)
    header = fits.Header()
    header["OBJECT"] = "M 42"
    header["CF_RAWS"] = "ab" * 32
    header["LONGVAL"] = ("x" * 90, "a long string becomes CONTINUE cards")
    header.add_history("ccdflow bias: done in 0.005 s")
    header.add_comment("a comment")
    return CCDData(
        data, unit="electron", header=header,
        mask=(data > 115) if mask else None,
        uncertainty=StdDevUncertainty(np.sqrt(np.abs(data))) if uncertainty else None,
    )


@pytest.mark.parametrize("shape", [(2048, 2048), (37, 53), (1, 5)])
@pytest.mark.parametrize("mask,uncertainty", [(True, True), (False, True), (True, False), (False, False)])
def test_bytes_equal_astropy_and_checksum_is_the_files(tmp_path, shape, mask, uncertainty):
    ccd = _ccd(shape, mask=mask, uncertainty=uncertainty)
    checksum = write_ccd(ccd, tmp_path / "ours.fits")
    ccd_to_hdulist(ccd).writeto(tmp_path / "astropy.fits", output_verify="silentfix")
    assert (tmp_path / "ours.fits").read_bytes() == (tmp_path / "astropy.fits").read_bytes()
    assert checksum == sha256_file(tmp_path / "ours.fits")
    back = read_product(tmp_path / "ours.fits")
    np.testing.assert_array_equal(back.data, ccd.data)
    assert back.header["CF_RAWS"] == "ab" * 32 and back.header["LONGVAL"] == "x" * 90
    assert list(back.header["HISTORY"]) == ["ccdflow bias: done in 0.005 s"]
    if mask:
        np.testing.assert_array_equal(back.mask, ccd.mask)
    if uncertainty:
        np.testing.assert_array_equal(back.uncertainty.array, ccd.uncertainty.array)


def test_pieces_span_several_row_blocks(tmp_path, monkeypatch):
    """Blocks smaller than the image and not dividing it: the layout must not depend on them."""
    monkeypatch.setattr(fitswrite, "_PIECE_BYTES", 3000)
    ccd = _ccd((101, 97), mask=True, uncertainty=True)
    checksum = write_ccd(ccd, tmp_path / "ours.fits")
    ccd_to_hdulist(ccd).writeto(tmp_path / "astropy.fits")
    assert (tmp_path / "ours.fits").read_bytes() == (tmp_path / "astropy.fits").read_bytes()
    assert checksum == sha256_file(tmp_path / "ours.fits")


@pytest.mark.parametrize("dtype", [np.uint16, np.int8, np.uint32])
def test_scaled_integers_go_through_astropy(tmp_path, dtype):
    """uint16 and int8 are stored with BZERO: astropy writes them, the checksum still matches."""
    data = np.arange(12, dtype=dtype).reshape(3, 4) + np.array(7, dtype)
    hdul = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, name="BPM")])
    assert not fitswrite._plain(hdul)
    checksum = atomic_write(hdul, tmp_path / "bpm.fits")
    assert checksum == sha256_file(tmp_path / "bpm.fits")
    np.testing.assert_array_equal(fits.getdata(tmp_path / "bpm.fits", "BPM"), data)


def test_write_is_atomic_and_leaves_no_temporary(tmp_path, monkeypatch):
    """A failure while writing leaves the previous product and no temporary file."""
    target = tmp_path / "p.fits"
    write_ccd(_ccd((8, 8), mask=True, uncertainty=True), target)
    before = target.read_bytes()

    def broken(pieces, fd):
        next(pieces)
        raise OSError("disk full")

    monkeypatch.setattr(fitswrite, "_write_hashing", broken)
    with pytest.raises(OSError, match="disk full"):
        write_ccd(_ccd((8, 8), mask=False, uncertainty=False), target)
    assert target.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["p.fits"]

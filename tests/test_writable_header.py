"""Header cards FITS cannot carry never fail a write and are never written: copied ones fixed and
noted, computed NaN/inf refused by name; the dead-readout check that keeps such frames out."""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.io.fitsio import read_ccd
from ccdflow.framework.io.fitswrite import ccd_to_hdulist, write_ccd
from ccdflow.framework.io.writable_header import NonFiniteCardError, writable_header
from ccdflow.framework.numerics.dead_readout import dead_readout


def raw_with(tmp_path, card_text: bytes) -> str:
    """A raw file whose OBJECT card is exactly ``card_text`` (what astropy would not write)."""
    header = fits.Header({"IMAGETYP": "LIGHT", "OBJECT": "X" * 10, "FILTER": "V"})
    fits.PrimaryHDU(np.ones((4, 4), np.int16), header).writeto(tmp_path / "clean.fits")
    blob = bytearray((tmp_path / "clean.fits").read_bytes())
    at = blob.find(b"OBJECT  =")
    blob[at:at + 80] = (b"OBJECT  = " + card_text).ljust(80)
    (tmp_path / "raw.fits").write_bytes(bytes(blob))
    return str(tmp_path / "raw.fits")


@pytest.mark.parametrize(("text", "object_after", "note"), [
    (b"'M51\x07\x1b[31m\x7f'", "M51??[31m?", "OBJECT: non-printable characters replaced by '?'"),
    (b"1E999".rjust(20), None, "OBJECT: non-finite value inf dropped"),
    (b"NAN".rjust(20), "NAN", "OBJECT: unparsable value NAN kept as the text 'NAN'"),
    # ZWO ASIImg writes numbers with a decimal comma, which astropy cannot parse (nor write back)
    (b"6,4E-05".rjust(20), "6,4E-05", "OBJECT: unparsable value 6,4E-05 kept as the text '6,4E-05'"),
])
def test_copied_cards_are_fixed_or_dropped_and_the_product_says_so(tmp_path, text, object_after, note):
    ccd = read_ccd(raw_with(tmp_path, text))
    write_ccd(ccd, tmp_path / "product.fits")
    with fits.open(tmp_path / "product.fits") as hdul:
        hdul.verify("exception")
        header = hdul[0].header
        assert header.get("OBJECT") == object_after
        assert header["CF_HFIX"] == 1 and f"ccdflow: {note}" in "\n".join(header["HISTORY"])
        assert header["FILTER"] == "V"
    assert list(ccd.header.items())  # the CCD in memory now holds what the file holds


def test_a_clean_header_is_copied_as_it_is(tmp_path):
    ccd = read_ccd(raw_with(tmp_path, b"'M51'"))
    header = writable_header(ccd.header)
    assert header == ccd.header and header is not ccd.header and "CF_HFIX" not in header


def test_a_computed_nan_is_refused_naming_the_card():
    ccd = CCDData(np.zeros((2, 2), np.float32), unit="adu", meta={"CF_MED": (np.float32("nan"), "median")})
    with pytest.raises(NonFiniteCardError, match=r"keyword CF_MED, found np.float32\(nan\)|keyword CF_MED"):
        ccd_to_hdulist(ccd)
    ok = CCDData(np.zeros((2, 2), np.float32), unit="adu", meta={"CF_MED": (1.5, "median"), "N": 2})
    assert ccd_to_hdulist(ok)[0].header["CF_MED"] == 1.5


@pytest.mark.parametrize(("data", "reason"), [
    (np.full((30, 30), np.nan, np.float32), "no finite pixel"),
    (np.zeros((30, 30), np.float32), "every pixel is 0 (a dead readout)"),
    (np.full((30, 30), 7.0, np.float32), "every pixel is 7 (a dead readout)"),
])
def test_dead_readouts_are_named(data, reason):
    mask = ~np.isfinite(data) if not np.isfinite(data).all() else None
    assert reason in dead_readout(data, mask)


def test_a_frame_constant_on_the_sample_grid_but_not_everywhere_is_alive():
    data = np.zeros((30, 30), np.float32)
    data[1, 1] = 5.0  # not on the 7x7 sample grid
    assert dead_readout(data) is None
    with_nan = data.copy()
    with_nan[0, 0] = np.nan
    assert dead_readout(with_nan, ~np.isfinite(with_nan)) is None

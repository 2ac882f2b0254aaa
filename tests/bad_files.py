"""Bad files made from a good simulated night's raw files, for the bad-input corpus: each
builder returns ``make(raw) -> path`` that adds one file (or link, FIFO, folder) to ``raw``."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
from astropy.io import fits

#: Raw files of the simulated night the builders copy.
BIAS, DARK, FLAT, SCI = ("n1_bias_001.fits", "n1_dark_30s_-20C_001.fits", "n1_flat_V_001.fits",
                         "n1_sci_V_001.fits")

Make = Callable[[Path], Path]


def with_cards(src: str, name: str, cards: dict) -> Make:
    """A copy of ``src`` with header cards set (None removes one); the pixels' bytes unchanged."""
    def make(raw: Path) -> Path:
        with fits.open(raw / src, do_not_scale_image_data=True) as hdul:
            header, data = hdul[0].header.copy(), hdul[0].data.copy()
        for key, value in cards.items():
            if value is None:
                header.remove(key, ignore_missing=True)
            else:
                header[key] = value
        fits.PrimaryHDU(data, header).writeto(raw / name)
        return raw / name
    return make


def with_card_text(src: str, name: str, key: str, text: bytes) -> Make:
    """A copy of ``src`` whose ``key`` card is rewritten byte for byte (what astropy would refuse
    to write: control characters, NAN, non-ASCII)."""
    def make(raw: Path) -> Path:
        blob = bytearray((raw / src).read_bytes())
        at = blob.find(key.ljust(8).encode() + b"=")
        assert at >= 0 and at % 80 == 0, key
        blob[at:at + 80] = (key.ljust(8).encode() + b"= " + text).ljust(80)[:80]
        (raw / name).write_bytes(bytes(blob))
        return raw / name
    return make


def with_pixels(src: str, name: str, fill: float, **cards) -> Make:
    """A copy of ``src`` whose pixels are all ``fill`` (float32), with header cards set."""
    def make(raw: Path) -> Path:
        header = fits.getheader(raw / src)
        for key in ("BZERO", "BSCALE"):
            header.remove(key, ignore_missing=True)
        header.update(cards)
        data = np.full((header["NAXIS2"], header["NAXIS1"]), fill, np.float32)
        fits.PrimaryHDU(data, header).writeto(raw / name)
        return raw / name
    return make


def with_nan(src: str, name: str, rows: slice, cols: slice) -> Make:
    """A float32 copy of ``src`` with NaN in one region (columns 64-71 are the overscan)."""
    def make(raw: Path) -> Path:
        with fits.open(raw / src) as hdul:
            header, data = hdul[0].header.copy(), hdul[0].data.astype(np.float32)
        for key in ("BZERO", "BSCALE"):
            header.remove(key, ignore_missing=True)
        data[rows, cols] = np.nan
        fits.PrimaryHDU(data, header).writeto(raw / name)
        return raw / name
    return make


def with_bytes(name: str, content: Callable[[Path], bytes]) -> Make:
    def make(raw: Path) -> Path:
        (raw / name).write_bytes(content(raw))
        return raw / name
    return make


def without_image(name: str, hdus: Callable[[fits.Header], list]) -> Make:
    """A file with the science frame's identifying cards but no 2-D image."""
    def make(raw: Path) -> Path:
        source = fits.getheader(raw / SCI)
        cards = fits.Header([c for c in source.cards if c.keyword not in
                             ("SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BZERO", "BSCALE")])
        fits.HDUList(hdus(cards)).writeto(raw / name)
        return raw / name
    return make


def compressed(src: str, name: str) -> Make:
    def make(raw: Path) -> Path:
        with fits.open(raw / src) as hdul:
            header, data = hdul[0].header.copy(), hdul[0].data.copy()
        if name.endswith(".fz"):
            fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header)]).writeto(raw / name)
        else:
            fits.PrimaryHDU(data, header).writeto(raw / name)  # astropy gzips by the name
        return raw / name
    return make


def in_subfolder(src: str, folder: str) -> Make:
    """Another frame under the same name in a subfolder (a second night copied in, say)."""
    def make(raw: Path) -> Path:
        (raw / folder).mkdir()
        with fits.open(raw / src) as hdul:
            fits.PrimaryHDU(hdul[0].data + 7, hdul[0].header).writeto(raw / folder / src)
        return raw / folder / src
    return make


def link(name: str, target: str) -> Make:
    def make(raw: Path) -> Path:
        os.symlink(target, raw / name)
        return raw / name
    return make


def fifo(name: str) -> Make:
    def make(raw: Path) -> Path:
        os.mkfifo(raw / name)
        return raw / name
    return make


def unreadable_folder(name: str) -> Make:
    """A folder holding a good science frame that cannot be listed: mode 000, or for root (whom
    permissions do not stop) a listing that fails as it would for anyone else."""
    def make(raw: Path) -> Path:
        folder = raw / name
        folder.mkdir()
        shutil.copy(raw / SCI, folder / "hidden_sci.fits")
        folder.chmod(0)
        return folder
    return make


def float64(src: str, name: str) -> Make:
    """A copy of ``src`` stored as BITPIX -64."""
    def make(raw: Path) -> Path:
        with fits.open(raw / src) as hdul:
            header, data = hdul[0].header.copy(), hdul[0].data.astype(np.float64)
        for key in ("BZERO", "BSCALE"):
            header.remove(key, ignore_missing=True)
        fits.PrimaryHDU(data, header).writeto(raw / name)
        return raw / name
    return make


def truncated(raw: Path) -> bytes:
    return (raw / SCI).read_bytes()[:-2880]


def cut_gzip(raw: Path) -> bytes:
    import gzip

    return gzip.compress((raw / SCI).read_bytes())[:1500]

"""Inputs of the combine engine: row bands read straight from FITS files or from arrays.

A FITS image is stored row after row, so a band of rows is one contiguous byte range: it is read
with one ``readinto`` into a reused buffer and converted (byte order, BSCALE/BZERO, BLANK) into
the float32 band the kernel works on. Nothing else of the file is mapped or kept, so every file
is read exactly once per combine and memory stays at the band size.
"""

from __future__ import annotations

import mmap
import os
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.utils.exceptions import AstropyWarning

from ccdflow.framework.engine.errors import UnprocessableInputError

_BITPIX = {8: ">u1", 16: ">i2", 32: ">i4", 64: ">i8", -32: ">f4", -64: ">f8"}


@dataclass
class FitsSource:
    """A 2-D image HDU of a FITS file, read by row bands; see :func:`fits_source`."""

    path: str
    hdu: int | str
    shape: tuple[int, int]
    offset: int  # byte offset of the pixels in the file; -1: compressed, read through astropy
    dtype: np.dtype
    bscale: float = 1.0
    bzero: float = 0.0
    blank: int | None = None
    _fh: Any = field(default=None, repr=False)
    _hdul: Any = field(default=None, repr=False)

    @property
    def ndim(self) -> int:
        return 2

    def open(self) -> FitsSource:
        """Open the file for band reads (the combine engine opens and closes its sources)."""
        if self._fh is None and self._hdul is None:
            if self.offset >= 0:
                self._fh = open(self.path, "rb")  # noqa: SIM115 - closed by close()
            else:
                self._hdul = fits.open(self.path, memmap=False)
        return self

    def close(self) -> None:
        for handle in (self._fh, self._hdul):
            if handle is not None:
                handle.close()
        self._fh = self._hdul = None

    def read_band(self, r0: int, r1: int, out: np.ndarray, raw: np.ndarray | None = None) -> None:
        """Write rows ``r0:r1`` as float32 into ``out`` (shape ``(r1 - r0, width)``).

        ``raw`` is an optional reusable byte buffer of at least the band's size in the file.
        """
        self.open()
        if self.offset < 0:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", AstropyWarning)
                out[...] = self._hdul[self.hdu].section[r0:r1]
            return
        width = self.shape[1]
        nbytes = (r1 - r0) * width * self.dtype.itemsize
        if raw is None or raw.nbytes < nbytes:
            raw = np.empty(nbytes, np.uint8)
        buf = raw[:nbytes]
        self._fh.seek(self.offset + r0 * width * self.dtype.itemsize)
        got = self._fh.readinto(buf.data)  # the array's memoryview
        if got != nbytes:
            raise UnprocessableInputError(
                f"file is truncated: rows {r0}-{r1} of {self.shape[0]} need {nbytes} bytes at offset "
                f"{self.offset}, got {got}", path=self.path)
        values = buf.view(self.dtype).reshape(r1 - r0, width)
        if self.bscale == 1.0 and self.bzero == 0.0:
            np.copyto(out, values, casting="unsafe")
        else:  # FITS: physical = BZERO + BSCALE * stored; float32 is exact for 16-bit data
            np.multiply(values, np.float32(self.bscale), out=out, casting="unsafe")
            out += np.float32(self.bzero)
        if self.blank is not None:
            out[values == self.blank] = np.nan


def fits_source(path: str | os.PathLike, hdu: int | str = 0) -> FitsSource:
    """Describe a 2-D image of a FITS file for band reads; the pixels are not read here.

    Integer data with BZERO/BSCALE are converted to their physical values; pixels equal to
    BLANK become NaN (masked by the combine). Compressed HDUs are read through astropy.
    """
    path = str(Path(path))
    try:
        with fits.open(path, memmap=False, lazy_load_hdus=True) as hdul:
            image = hdul[hdu]
            header = image.header
            info = hdul.fileinfo(hdul.index_of(hdu))
            compressed = isinstance(image, fits.CompImageHDU)
    except FileNotFoundError:
        raise UnprocessableInputError("file not found", path=path) from None
    except (KeyError, IndexError):
        raise UnprocessableInputError(f"no HDU {hdu!r} in the file", path=path) from None
    except (OSError, ValueError, TypeError) as exc:
        raise UnprocessableInputError(f"not a readable FITS file ({exc})", path=path) from None
    naxis = header.get("NAXIS", 0)  # a CompImageHDU's header describes the uncompressed image
    if naxis != 2:
        raise UnprocessableInputError(f"HDU {hdu!r} is not a 2-D image", path=path,
                                      keyword="NAXIS", value=naxis, expected="2")
    shape = (int(header["NAXIS2"]), int(header["NAXIS1"]))
    bitpix = header.get("BITPIX")
    if bitpix not in _BITPIX:
        raise UnprocessableInputError("unsupported pixel type", path=path, keyword="BITPIX",
                                      value=bitpix, expected="one of 8, 16, 32, 64, -32, -64")
    bscale, bzero = float(header.get("BSCALE", 1.0)), float(header.get("BZERO", 0.0))
    blank = header.get("BLANK") if bitpix > 0 else None
    offset = -1 if compressed else int(info["datLoc"])
    return FitsSource(path, hdu, shape, offset, np.dtype(_BITPIX[bitpix]), bscale, bzero,
                      None if blank is None else int(blank))


def read_band(source: np.ndarray | FitsSource, r0: int, r1: int, out: np.ndarray,
              raw: np.ndarray | None = None) -> None:
    """Rows ``r0:r1`` of an array or a FITS source, as float32, into ``out``."""
    if isinstance(source, FitsSource):
        source.read_band(r0, r1, out, raw)
    else:
        rows = source[r0:r1]
        if not pread_view(rows, out):
            np.copyto(out, rows, casting="unsafe")
            release_pages(rows)


def file_position(view: np.ndarray) -> tuple[str, int] | None:
    """(file, byte offset) of a contiguous view into an np.memmap, or None for anything else."""
    mm, filename = getattr(view, "_mmap", None), getattr(view, "filename", None)
    if not isinstance(mm, mmap.mmap) or not filename or not view.flags.c_contiguous:
        return None
    if getattr(view, "mode", None) == "c":  # copy-on-write: what it holds may not be the file's
        return None
    start = view.ctypes.data - _map_address(mm)
    map_offset = int(getattr(view, "offset", 0) or 0)
    return filename, start + map_offset - map_offset % mmap.ALLOCATIONGRANULARITY


def pread_view(view: np.ndarray, out: np.ndarray) -> bool:
    """Copy a contiguous view of a file map into ``out`` (same dtype and size, contiguous) with
    ``pread`` from the file instead of through the map: the kernel copies from its page cache
    with no page faults, and nothing is left mapped to release (a 20-frame 2k spool read back by
    the combine: 80k faults). False (nothing read) when the view is not such a view."""
    where = file_position(view) if out.flags.c_contiguous and out.dtype == view.dtype else None
    if where is None or out.nbytes != view.nbytes:
        return False
    fd = os.open(where[0], os.O_RDONLY)
    try:
        target, position = out.reshape(-1).view(np.uint8).data, where[1]
        while len(target):
            got = os.preadv(fd, [target], position)
            if got <= 0:
                raise OSError(f"{where[0]}: short read at byte {position}")
            target, position = target[got:], position + got
    finally:
        os.close(fd)
    return True


def release_pages(view: np.ndarray) -> None:
    """Take the pages of a view into a shared file map (a spool frame or band already copied
    out) off this process's resident set.

    The combine reads each band once; without this every spool page it touched would stay
    mapped, so a 20-frame 2k spool adds ~420 MiB to the process's RSS though the kernel keeps
    the bytes in its page cache anyway. MADV_DONTNEED on a shared file map loses nothing (the
    next access reads the file's pages again). Anything but a contiguous view of an np.memmap
    is left alone."""
    mm = getattr(view, "_mmap", None)
    if not isinstance(mm, mmap.mmap) or not view.flags.c_contiguous or view.nbytes == 0:
        return
    start = view.ctypes.data - _map_address(mm)
    first = start - start % mmap.PAGESIZE
    mm.madvise(mmap.MADV_DONTNEED, first, start + view.nbytes - first)


def _map_address(mm: mmap.mmap) -> int:
    """The address of a map's first byte, to locate a view in it; a read-only map too (ctypes'
    ``from_buffer`` refuses one, and np.load(..., mmap_mode="r") gives such maps). The buffer
    export ends before returning: one left alive would keep the map from closing."""
    anchor = np.frombuffer(mm, np.uint8, count=1)
    address = int(anchor.ctypes.data)
    del anchor
    return address


def describe(source: np.ndarray | FitsSource, index: int) -> str:
    """How to name an input in a message: its path, or its position in the list."""
    return source.path if isinstance(source, FitsSource) else f"frame {index}"

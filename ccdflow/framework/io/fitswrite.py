"""FITS writes: atomic (temporary name, then rename), hashed while written, products and masters
as SCI, UNCERT and MASK extensions whose headers hold only cards FITS can carry."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework import dq
from ccdflow.framework.io.fitsio import sha256_file


def _current_umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


_UMASK = _current_umask()


#: FITS blocks are 2880 bytes; data are cut into pieces of about this size so the hash of one
#: piece runs on the hashing thread while the next is byte-swapped and written.
_PIECE_BYTES = 4 << 20


#: dtypes FITS stores as they are (BITPIX 8, 16, 32, 64, -32, -64); any other needs BZERO.
_PLAIN_DTYPES = {np.dtype(t).newbyteorder("=").str[1:] for t in (np.uint8, np.int16, np.int32, np.int64,
                                                               np.float32, np.float64)}


def _plain(hdul: fits.HDUList) -> bool:
    """True when every HDU is an image whose bytes are its array's, big-endian: what
    :func:`_hdu_pieces` can lay out itself (tables, scaled or unsigned data go through astropy)."""
    for hdu in hdul:
        if not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) or isinstance(hdu, fits.CompImageHDU):
            return False
        if any(key in hdu.header for key in ("BZERO", "BSCALE", "BLANK")):
            return False
        data = hdu.data
        if data is not None and data.dtype.str[1:] not in _PLAIN_DTYPES:
            return False
    return True


def _hdu_pieces(hdul: fits.HDUList) -> Iterator[bytes | np.ndarray]:
    """The file's bytes in order, as astropy's ``writeto`` lays them out: each header padded
    to 2880 bytes, data big-endian in row blocks, zero padding (a test pins byte equality)."""
    hdul.verify(option="silentfix")
    hdul.update_extend()
    for hdu in hdul:
        yield hdu.header.tostring().encode("ascii")
        data = hdu.data
        if data is None or data.size == 0:
            continue
        big = data.dtype.newbyteorder(">") if data.dtype.byteorder != "|" else data.dtype
        rows = max(1, _PIECE_BYTES // max(1, data[0].nbytes)) if data.ndim > 1 else data.shape[0]
        for start in range(0, data.shape[0], rows):
            yield np.ascontiguousarray(data[start:start + rows], dtype=big)
        if pad := -data.nbytes % 2880:
            yield bytes(pad)


def _write_hashing(pieces: Iterator[bytes | np.ndarray], fd: int) -> str:
    """Write the pieces to ``fd`` and return the SHA-256 of what was written, hashed on a second
    thread as the pieces go out (hashlib and os.write release the GIL): no re-read of the file."""
    digest = hashlib.sha256()
    with ThreadPoolExecutor(1, thread_name_prefix="ccdflow-sha256") as pool:
        pending = []
        for piece in pieces:
            view = piece.data.cast("B") if isinstance(piece, np.ndarray) else memoryview(piece)
            pending.append(pool.submit(digest.update, view))  # one worker: updates stay in order
            while view:
                view = view[os.write(fd, view):]
        for future in pending:
            future.result()
    return digest.hexdigest()


def atomic_write(hdul: fits.HDUList, path: str | Path) -> str:
    """Write to a temporary name in the same folder, then rename: readers never see half a file.
    Returns the SHA-256 of the file's bytes (equal to :func:`sha256_file` of it).

    No fsync: a killed process leaves either the old file or the new one, and after a power
    cut a product whose bytes did not reach the disk no longer matches the checksum the caldb
    recorded, so the ledger redoes it. (fsync cost ~12 ms per 2048x2048 product.)
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        if _plain(hdul):
            try:
                checksum = _write_hashing(_hdu_pieces(hdul), fd)
            finally:
                os.close(fd)
        else:
            with os.fdopen(fd, "wb") as fh:
                hdul.writeto(fh, output_verify="silentfix")
            checksum = sha256_file(tmp)
        os.chmod(tmp, 0o666 & ~_UMASK)  # mkstemp makes 0600; products are for the whole team
        os.replace(tmp, path)
    except BaseException as exc:
        Path(tmp).unlink(missing_ok=True)
        from ccdflow.framework.engine.errors import DiskFullError

        if isinstance(exc, OSError) and exc.errno in DiskFullError.ERRNOS:
            try:
                needed: int | None = sum(hdu.filebytes() for hdu in hdul)
            except Exception:  # the size is only for the message
                needed = None
            raise DiskFullError.in_folder(path.parent, needed=needed, what=path.name) from None
        raise
    return checksum


def ccd_to_hdulist(ccd: CCDData) -> fits.HDUList:
    """SCI (float32), UNCERT (std dev, float32) and MASK (DQ bits, :mod:`ccdflow.framework.dq`)
    extensions. The primary header
    holds only cards FITS can carry: copied cards are fixed and noted, a NaN or inf computed by
    code is refused by name (:func:`~ccdflow.framework.io.writable_header.writable_header`). When a
    card had to be fixed, ``ccd.header`` becomes the fixed header too, so what the caller reads
    afterwards is what the file holds (an unparsable card would fail the next ``items()``)."""
    from ccdflow.framework.io.writable_header import writable_header

    fixed: list[str] = []
    # CCDData built in memory carries a plain dict as its header until someone sets one
    header = writable_header(ccd.header, fixed)
    if fixed:
        ccd.header = header.copy()
    primary = fits.PrimaryHDU(header=header)
    primary.header["BUNIT"] = str(ccd.unit)
    sci = fits.ImageHDU(np.asarray(ccd.data, dtype=np.float32), name="SCI")
    sci.header["BUNIT"] = str(ccd.unit)
    hdus = [primary, sci]
    if ccd.uncertainty is not None:
        hdus.append(fits.ImageHDU(np.asarray(ccd.uncertainty.array, dtype=np.float32), name="UNCERT"))
    # a NaN or inf written unflagged would pass for data: flag it (and the frame in memory too)
    flags = dq.of(ccd)
    nonfinite = ~np.isfinite(sci.data)
    if nonfinite.any():
        flags = dq.flag(flags, nonfinite, dq.NON_FINITE)
        ccd.mask, ccd.flags = flags != 0, flags
    if flags is not None:
        values, table = dq.to_file(flags)
        hdus.append(fits.ImageHDU(values, header=table, name="MASK"))
    return fits.HDUList(hdus)


def write_ccd(ccd: CCDData, path: str | Path) -> str:
    """Write a product atomically and return its SHA-256 (computed while writing)."""
    return atomic_write(ccd_to_hdulist(ccd), path)

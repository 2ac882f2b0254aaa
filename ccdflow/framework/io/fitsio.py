"""FITS I/O at the edges: header-only reads, float32 frames, atomic writes, checksums."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io import cards


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def read_headers(path: str | Path, *, complete: bool = False) -> dict[int | str, fits.Header]:
    """Every HDU header by index and EXTNAME, without reading pixels.

    With ``complete=True`` a file shorter than its headers promise (an interrupted copy)
    is an error; astropy only warns about it, and only when the pixels are read.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("ignore", AstropyWarning)
            if complete:
                warnings.filterwarnings("always", ".*truncated.*", AstropyUserWarning)
            with fits.open(path, lazy_load_hdus=True, ignore_missing_simple=True) as hdul:
                out: dict[int | str, fits.Header] = {}
                for i, hdu in enumerate(hdul):
                    header = hdu.header.copy()
                    out[i] = header
                    name = header.get("EXTNAME")
                    if isinstance(name, str):
                        out[name.strip()] = header
    except FileNotFoundError:
        raise UnprocessableInputError("file not found", path=str(path)) from None
    except (OSError, EOFError, ValueError, IndexError, TypeError) as exc:
        raise UnprocessableInputError(f"not a readable FITS file ({exc})", path=str(path)) from None
    truncated = [w for w in caught if issubclass(w.category, AstropyUserWarning)]
    for w in caught:  # record=True swallows everything; give the rest back
        if w not in truncated:
            warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    if truncated:
        raise UnprocessableInputError(
            f"FITS file is truncated ({truncated[0].message})", path=str(path)
        )
    if not out:
        raise UnprocessableInputError("FITS file has no HDUs", path=str(path))
    return out


#: ``data_hdu`` value meaning "the first HDU holding a 2-D image".
AUTO_HDU = "auto"


def is_image_header(header: fits.Header) -> bool:
    """True for a primary or IMAGE extension header with a non-empty 2-D array.

    Binary tables also have NAXIS = 2, so the XTENSION check matters (HST WCSCORR).
    """
    if header.get("XTENSION", "IMAGE").strip().upper() != "IMAGE":
        return False
    naxis = header.get("NAXIS", 0)
    if not isinstance(naxis, int) or naxis < 2:
        return False
    sizes = [header.get(f"NAXIS{i}", 0) for i in range(1, naxis + 1)]
    # A 3-D cube with one plane is still an image; anything thicker is not ours.
    return sizes[0] > 0 and sizes[1] > 0 and all(n == 1 for n in sizes[2:])


def first_image_hdu(headers: Sequence[fits.Header]) -> int | None:
    """Index of the first HDU with a 2-D image, or None."""
    return next((i for i, h in enumerate(headers) if is_image_header(h)), None)


def _read_int16(source: str | Path | bytes, hdu: fits.hdu.base._BaseHDU) -> np.ndarray | None:
    """The 16-bit integer image most CCDs write, straight to float32 in one pass (astropy makes
    a uint16 copy first, then the float32 one: 11 -> 4 ms at 2048x2048); None when the HDU is
    anything else (scaled, BLANK, another BITPIX, a compressed file) so astropy reads it.
    ``source`` is the file's path or its (uncompressed) bytes."""
    h = hdu.header
    if (not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) or isinstance(hdu, fits.CompImageHDU)
            or h.get("BITPIX") != 16 or h.get("NAXIS") != 2 or "BLANK" in h
            or h.get("BSCALE", 1) != 1 or h.get("BZERO", 0) not in (0, 32768)):
        return None
    shape = (h["NAXIS2"], h["NAXIS1"])
    count, start = shape[0] * shape[1], hdu.fileinfo()["datLoc"]
    if isinstance(source, bytes):
        if source[:6] != b"SIMPLE":
            return None
        raw = np.frombuffer(source, ">i2", count=min(count, max(0, (len(source) - start) // 2)),
                            offset=start)
    else:
        with open(source, "rb") as fh:
            if fh.read(6) != b"SIMPLE":  # gzip and friends: astropy's offsets are not file offsets
                return None
            fh.seek(start)
            raw = np.fromfile(fh, ">i2", count=count)
    if raw.size != count:
        raise ValueError(f"cannot reshape {raw.size} values into {shape}")  # read_ccd: truncated
    out = np.empty(shape, np.float32)  # int16 + BZERO is exact in float32 (< 2**24)
    np.add(raw.reshape(shape), np.float32(h.get("BZERO", 0)), out=out, casting="unsafe")
    return out


def read_file_hashed(path: str | Path) -> tuple[bytes, str]:
    """A file's bytes and their SHA-256, from one read: what a product records as its raw
    checksum is then exactly what was reduced, even if the file is rewritten meanwhile."""
    try:
        content = Path(path).read_bytes()
    except FileNotFoundError:
        raise UnprocessableInputError("file not found", path=str(path)) from None
    except OSError as exc:
        raise UnprocessableInputError(f"cannot read the file ({exc.strerror or exc})",
                                      path=str(path)) from None
    return content, hashlib.sha256(content).hexdigest()


def _uncompressed(content: bytes) -> bytes:
    """gzip or bzip2 bytes decompressed (astropy only decompresses files it opens by name)."""
    if content[:2] == b"\x1f\x8b":
        return gzip.decompress(content)
    if content[:3] == b"BZh":
        return bz2.decompress(content)
    return content


def read_ccd(path: str | Path, hdu: int | str = 0, unit: str = "adu", *,
             content: bytes | None = None) -> CCDData:
    """A raw frame as float32 CCDData; the primary header is merged in for MEF files.

    ``content`` is the file's bytes when the caller has read them already (see
    :func:`read_file_hashed`); ``path`` then only names the file in messages."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", AstropyWarning)
            source: str | Path | bytes = path if content is None else _uncompressed(content)
            opened = fits.open(io.BytesIO(source) if isinstance(source, bytes) else source,
                               memmap=False)
            with opened as hdul:
                if hdu == AUTO_HDU:
                    found = first_image_hdu([h.header for h in hdul])
                    if found is None:
                        raise UnprocessableInputError("no HDU holds a 2-D image", path=str(path))
                    hdu = found
                data = _read_int16(source, hdul[hdu])
                if data is None:
                    data = hdul[hdu].data
                if data is None or data.ndim != 2:
                    raise UnprocessableInputError(
                        f"HDU {hdu!r} holds no 2-D image", path=str(path)
                    )
                data = np.asarray(data, dtype=np.float32)
                header = hdul[hdu].header.copy()
                if hdu not in (0, hdul[0].name) and hdul[0].data is None:
                    for card in hdul[0].header.cards:
                        if card.keyword not in header and card.keyword not in ("", "COMMENT", "HISTORY"):
                            header.append(card)
    except UnprocessableInputError:
        raise
    except ValueError as exc:
        if "reshape" in str(exc):  # numpy's words for "fewer bytes than NAXIS promises"
            raise UnprocessableInputError(
                f"FITS file is truncated: HDU {hdu!r} has fewer pixels than its header's NAXIS "
                f"promise ({exc})", path=str(path)) from None
        raise UnprocessableInputError(f"cannot read pixels ({exc})", path=str(path)) from None
    except (OSError, EOFError, IndexError, KeyError, TypeError) as exc:
        raise UnprocessableInputError(f"cannot read pixels ({exc})", path=str(path)) from None
    raw_integers = "BLANK" not in header and header.get("BITPIX") in (8, 16, 32, 64)
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    if raw_integers:  # no BLANK, so nothing can be non-finite
        return CCDData(data, unit=unit, header=header)
    # NaN/inf (and BLANK, which astropy turns into NaN) are masked here, once, so every step
    # and every combine leaves them out; the values stay NaN so nothing mistakes them for data.
    bad = ~np.isfinite(data)
    if bad.any():
        data[bad] = np.nan
        cards.NBAD.put(header, int(bad.sum()))
        return CCDData(data, unit=unit, header=header, mask=bad)
    return CCDData(data, unit=unit, header=header)


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
            view = memoryview(piece).cast("B") if isinstance(piece, np.ndarray) else memoryview(piece)
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
    """SCI (float32), UNCERT (std dev, float32) and MASK (uint8) extensions. The primary header
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
    if ccd.mask is not None:
        mask = np.asarray(ccd.mask)  # a bool mask is already 0/1 bytes: a view, not a copy
        hdus.append(fits.ImageHDU(mask.view(np.uint8) if mask.dtype == bool else mask.astype(np.uint8),
                                  name="MASK"))
    return fits.HDUList(hdus)


def write_ccd(ccd: CCDData, path: str | Path) -> str:
    """Write a product atomically and return its SHA-256 (computed while writing)."""
    return atomic_write(ccd_to_hdulist(ccd), path)


def read_product(path: str | Path, *, content: bytes | None = None) -> CCDData:
    """Read a file written by :func:`write_ccd` back into CCDData (from ``content``, its bytes,
    when the caller has them)."""
    with fits.open(path if content is None else io.BytesIO(content), memmap=False) as hdul:
        header = hdul[0].header.copy()
        data = np.asarray(hdul["SCI"].data, dtype=np.float32)
        unit = header.get("BUNIT", "adu")
        uncert = hdul["UNCERT"].data if "UNCERT" in hdul else None
        mask = hdul["MASK"].data.astype(bool) if "MASK" in hdul else None
    return CCDData(
        data, unit=unit, header=header, mask=mask,
        uncertainty=None if uncert is None else StdDevUncertainty(np.asarray(uncert, np.float32)),
    )

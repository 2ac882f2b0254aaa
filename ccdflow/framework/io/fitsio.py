"""FITS I/O at the edges: header-only reads, float32 frames, atomic writes, checksums."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty
from astropy.utils.exceptions import AstropyUserWarning, AstropyWarning

from ccdflow.framework import dq
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io import cards


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


class TruncatedFileError(UnprocessableInputError):
    """A FITS file shorter than its headers promise (an interrupted copy): its headers can still
    be read, its pixels cannot."""


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
        raise TruncatedFileError(f"FITS file is truncated ({truncated[0].message})", path=str(path))
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


def _read_float32(source: bytes, hdu: fits.hdu.base._BaseHDU) -> np.ndarray | None:
    """A plain float32 image (a ccdflow product's SCI or UNCERT) from the file's bytes in one
    byte-swapping copy (astropy reads a big-endian copy, then the native one is a second);
    None for anything else (scaled, another BITPIX, compressed), which astropy reads."""
    h = hdu.header
    if (not isinstance(hdu, fits.PrimaryHDU | fits.ImageHDU) or isinstance(hdu, fits.CompImageHDU)
            or h.get("BITPIX") != -32 or h.get("NAXIS") != 2 or h.get("BSCALE", 1) != 1
            or h.get("BZERO", 0) != 0 or source[:6] != b"SIMPLE"):
        return None
    shape = (h["NAXIS2"], h["NAXIS1"])
    count, start = shape[0] * shape[1], hdu.fileinfo()["datLoc"]
    if len(source) < start + 4 * count:
        return None  # truncated: astropy's read says so
    return np.frombuffer(source, ">f4", count=count, offset=start).astype(np.float32).reshape(shape)


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
    return raw_frame(data, header, unit, integers=raw_integers)


def raw_frame(data: np.ndarray, header: fits.Header, unit: str = "adu", *,
              integers: bool = False) -> CCDData:
    """Raw float32 pixels and their header as the frame every recipe starts from (a file's, or
    one handed over in memory): scaling cards removed, NaN/inf masked. ``integers``: the
    pixels were integers without BLANK, so nothing can be non-finite (no scan needed).
    ``header`` is changed in place."""
    for key in ("BZERO", "BSCALE", "BLANK"):
        header.remove(key, ignore_missing=True)
    if integers:  # no BLANK, so nothing can be non-finite
        return CCDData(data, unit=unit, header=header)
    # NaN/inf (and BLANK, which astropy turns into NaN) are masked here, once, so every step
    # and every combine leaves them out; the values stay NaN so nothing mistakes them for data.
    bad = ~np.isfinite(data)
    if bad.any():
        data[bad] = np.nan
        cards.NBAD.put(header, int(bad.sum()))
        return CCDData(data, unit=unit, header=header, mask=bad, flags=dq.flag(None, bad, dq.NON_FINITE))
    return CCDData(data, unit=unit, header=header)


def read_product(path: str | Path, *, content: bytes | None = None) -> CCDData:
    """Read a file written by :func:`write_ccd` back into CCDData (from ``content``, its bytes,
    when the caller has them); the DQ bits in ``flags`` (:func:`ccdflow.framework.dq.from_file`),
    ``mask = flags != 0``. A gzip'ed or bzip2'ed file's bytes are decompressed first, as astropy
    does for a file it opens by name."""
    content = None if content is None else _uncompressed(content)
    with fits.open(path if content is None else io.BytesIO(content), memmap=False) as hdul:
        header = hdul[0].header.copy()

        def plane(name: str) -> np.ndarray:  # native float32, one copy of the file's bytes
            direct = None if content is None else _read_float32(content, hdul[name])
            return np.array(hdul[name].data, np.float32) if direct is None else direct

        data = plane("SCI")
        unit = header.get("BUNIT", "adu")
        uncert = plane("UNCERT") if "UNCERT" in hdul else None
        flags = dq.from_file(hdul["MASK"].data, hdul["MASK"].header) if "MASK" in hdul else None
    return CCDData(
        data, unit=unit, header=header, mask=None if flags is None else flags != 0, flags=flags,
        uncertainty=None if uncert is None else StdDevUncertainty(uncert, copy=False),
    )

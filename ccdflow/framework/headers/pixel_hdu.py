"""Which HDU of a file holds the pixels, and their shape, from the headers alone."""

from __future__ import annotations

from collections.abc import Mapping

from astropy.io import fits

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io.fitsio import AUTO_HDU, first_image_hdu, is_image_header

Headers = Mapping[int | str, fits.Header]


def resolve_data_hdu(headers: Headers, data_hdu: int | str, path: str | None = None) -> int | str:
    """The concrete HDU key for ``data_hdu``: 'auto' becomes the first 2-D image, and the primary
    of a tile-compressed (fpack) file becomes extension 1, where fpack moved its image."""
    if data_hdu in (0, "PRIMARY") and _fpacked_primary(headers, path):
        return 1
    if data_hdu != AUTO_HDU:
        return data_hdu
    ordered = [headers[i] for i in sorted(k for k in headers if isinstance(k, int))]
    found = first_image_hdu(ordered)
    if found is None:
        raise UnprocessableInputError(
            "no HDU holds a 2-D image", path=path, keyword="NAXIS", value=_describe_hdus(headers),
            expected="2 in the primary HDU or an IMAGE extension (a cube needs exactly one plane)",
        )
    return found


def _fpacked_primary(headers: Headers, path: str | None) -> bool:
    """fpack leaves the primary HDU empty and stores the image in extension 1; astropy shows
    that extension's header as the original primary's (``SIMPLE = T``), and ``.fz`` names it."""
    primary, first = headers.get(0), headers.get(1)
    if primary is None or first is None or is_image_header(primary) or not is_image_header(first):
        return False
    return (first.get("SIMPLE") is True or first.get("ZIMAGE") is True
            or str(path or "").lower().endswith(".fz"))


def data_shape(headers: Headers, data_hdu: int | str, path: str | None = None) -> tuple[int, int]:
    """Raw (ny, nx) from NAXIS cards, so scanning never reads pixels."""
    hdu = resolve_data_hdu(headers, data_hdu, path)
    header = headers.get(hdu)
    if header is None or not is_image_header(header):
        where = "" if header is None else f"; extensions: {_describe_hdus(headers)}"
        raise UnprocessableInputError(
            f"HDU {hdu!r} holds no 2-D image{where}", path=path, keyword="NAXIS",
            value=None if header is None else header.get("NAXIS"),
            expected="2 (or 3 with NAXIS3 = 1) in an image HDU",
        )
    return int(header["NAXIS2"]), int(header["NAXIS1"])


def _describe_hdus(headers: Headers) -> str:
    """"0 PRIMARY NAXIS=0, 1 IMAGE 'IM1' NAXIS=2" so a user sees where the pixels really are."""
    parts = []
    for i in sorted(k for k in headers if isinstance(k, int)):
        kind = str(headers[i].get("XTENSION", "PRIMARY")).strip()
        name = str(headers[i].get("EXTNAME", "")).strip()
        label = f"{i} {kind}" + (f" {name!r}" if name else "")
        naxis = headers[i].get("NAXIS")
        planes = [f"NAXIS{n}={headers[i].get(f'NAXIS{n}')}" for n in range(3, min(naxis, 9) + 1)
                  ] if isinstance(naxis, int) else []  # a cube's depth says why it is not an image
        parts.append(" ".join([f"{label} NAXIS={naxis}", *planes]))
    return ", ".join(parts)

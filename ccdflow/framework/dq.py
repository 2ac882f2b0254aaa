"""The data-quality (DQ) bits of a product's MASK: why each pixel is flagged, one bit per reason.

A product's MASK extension holds these bits OR-ed together (0 = good), so a user can drop
cosmic rays and keep saturated stars, or the reverse; ``mask != 0`` is astropy's boolean view.
Chosen after DRAGONS (bad pixel, non-linear, saturated, cosmic ray, no data, ...), BANZAI and
JWST (DO_NOT_USE, SATURATED, JUMP_DET, ...): a small table, one reason per bit, 16-bit.

In memory astropy's ``CCDData.mask`` is always boolean (its setter casts), so a frame carries
its bits in ``CCDData.flags`` (NDData's per-pixel flags) beside the mask: a step that flags
sets both (:func:`flagged`); the framework carries ``flags`` through steps that leave the
mask alone and reconciles them with the mask after every step (:func:`reconcile`: a pixel
masked without a reason gets :data:`MASKED`). On disk MASK is ``int16`` (BITPIX 16 without
BZERO; bits 0-14 only, so every value is the same number) and its header holds the table,
one ``CF_DQ<value>`` card per bit, so a file explains itself. See docs/dq-bits.md.
"""

from __future__ import annotations

import weakref
from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np
from astropy.io import fits

if TYPE_CHECKING:
    from astropy.nddata import CCDData

#: A hot pixel of the bad-pixel mask (dark current).
HOT = 1
#: A dead or low pixel of the bad-pixel mask (flat).
LOW = 2
#: An unstable pixel of the bad-pixel mask (frame-to-frame scatter).
UNSTABLE = 4
#: At or above the raw saturation level (with its growth along columns).
SATURATED = 8
#: A cosmic-ray hit found by the cosmicray step.
COSMIC_RAY = 16
#: The master flat is below the flat step's ``min_value`` here: the pixel was not divided.
FLAT_LOW = 32
#: The raw or computed value is NaN or infinite.
NON_FINITE = 64
#: No data: no input reached this pixel of a master or a stack, or a master applied had none.
NO_DATA = 128
#: Inside a bright source of the source_mask step (not a defect).
SOURCE = 256
#: Flagged without a reason: a boolean mask from a plugin step or from an older file.
MASKED = 512

#: value -> (name, meaning): the table written into every MASK header and docs/dq-bits.md.
TABLE: Mapping[int, tuple[str, str]] = {
    HOT: ("HOT", "hot pixel (bad-pixel mask, dark current)"),
    LOW: ("LOW", "dead or low pixel (bad-pixel mask, flat)"),
    UNSTABLE: ("UNSTABLE", "unstable pixel (bad-pixel mask, scatter)"),
    SATURATED: ("SATURATED", "saturated (raw level, grown along columns)"),
    COSMIC_RAY: ("COSMIC", "cosmic ray (cosmicray step)"),
    FLAT_LOW: ("FLATLOW", "flat below min_value: not divided"),
    NON_FINITE: ("NONFINITE", "value NaN or infinite"),
    NO_DATA: ("NODATA", "no data (no input, or a master has none)"),
    SOURCE: ("SOURCE", "bright source (source_mask step)"),
    MASKED: ("MASKED", "masked without a reason (boolean mask)"),
}

DTYPE = np.uint16
#: The bits that exist: a value outside them in a file is not ours.
ALL = sum(TABLE)


def bits(mask: np.ndarray | None) -> np.ndarray | None:
    """``mask`` as uint16 bits: integers kept, a boolean mask's True pixels become :data:`MASKED`."""
    if mask is None:
        return None
    mask = np.asarray(mask)
    if mask.dtype == bool:
        return mask.astype(DTYPE) * DTYPE(MASKED)
    return mask if mask.dtype == DTYPE else mask.astype(DTYPE)


def flag(values: np.ndarray | None, where: np.ndarray | None, bit: int) -> np.ndarray | None:
    """New uint16 bits: ``values``' bits plus ``bit`` where ``where`` is True (``values`` unchanged).

    ``where`` None (nothing to flag) returns ``values``' bits; both None returns None."""
    if bit not in TABLE:
        raise ValueError(f"{bit} is not a DQ bit (bits: {', '.join(map(str, TABLE))})")
    out = bits(values)
    if where is None:
        return out
    where = np.asarray(where, bool)
    if out is None:
        return where.astype(DTYPE) * DTYPE(bit)
    if not where.any():  # a master's mask with nothing masked: no copy, no indexed pass (~1 ms)
        return out
    out = out.copy()
    out[where] |= DTYPE(bit)
    return out


def reconcile(flags: np.ndarray | None, mask: np.ndarray | None) -> np.ndarray | None:
    """The bits that agree with the boolean ``mask``: masked pixels keep their bits (or get
    :data:`MASKED` when they have none), unmasked pixels have none."""
    if mask is None:
        return None
    mask = np.asarray(mask, bool)
    if flags is None or np.shape(flags) != mask.shape:
        return bits(mask)
    values = bits(flags)
    assert values is not None
    # the usual case (a step set both, mask = flags != 0): the bits as they are, after one
    # comparison pass (1 ms at 2048^2) instead of building them again (3 ms; 5 calls a frame)
    if _known_pair(mask, values):
        return values
    from ccdflow.framework.numerics.frame_passes import mask_agrees  # numba: loaded on first use

    if mask_agrees(mask, values):
        remember_pair(mask, values)
        return values
    out = np.where(mask, values, DTYPE(0)).astype(DTYPE, copy=False)
    out[mask & (out == 0)] = MASKED
    return out


def of(ccd: CCDData) -> np.ndarray | None:
    """A frame's DQ bits (uint16), agreeing with its mask; None when it has no mask."""
    return reconcile(ccd.flags, ccd.mask)


def flagged(ccd: CCDData, where: np.ndarray | None, bit: int) -> tuple[np.ndarray | None,
                                                                       np.ndarray | None]:
    """(mask, flags) for a new CCDData: ``ccd``'s plus ``bit`` where ``where`` is True."""
    before = of(ccd)
    if before is None and where is not None and not np.any(where):
        # nothing flagged before or now (a frame with no saturated pixel): planes of zeros,
        # which the allocator hands over untouched, instead of a cast, a multiply and a compare
        mask: np.ndarray | None = np.zeros(np.shape(where), bool)
        flags: np.ndarray | None = np.zeros(np.shape(where), DTYPE)
    else:
        flags = flag(before, where, bit)
        mask = None if flags is None else flags != 0
    if mask is not None and flags is not None:
        remember_pair(mask, flags)
    return mask, flags


#: mask id -> (mask, bits) known to agree, held weakly: a recipe asks every step whether its
#: frame's mask and bits agree, and on a 2k frame each answer read 12 MB
_AGREED: dict[int, tuple[weakref.ref, weakref.ref]] = {}


def remember_pair(mask: np.ndarray, flags: np.ndarray) -> None:
    """Record that ``mask == (flags != 0)``, for as long as ``mask`` lives. Like
    :func:`after_step`, this trusts that arrays handed on are not changed in place."""
    key = id(mask)
    _AGREED[key] = (weakref.ref(mask), weakref.ref(flags))
    weakref.finalize(mask, _AGREED.pop, key, None)


def _known_pair(mask: np.ndarray, flags: np.ndarray) -> bool:
    pair = _AGREED.get(id(mask))
    return pair is not None and pair[0]() is mask and pair[1]() is flags


def after_step(before: CCDData, after: CCDData) -> np.ndarray | None:
    """The flags a step's result carries: its own when it set them (a step that flags), else
    the input's, reconciled with the result's mask (a step that only passed the mask on keeps
    every reason; one that returned a boolean mask of its own gets MASKED for new pixels). A
    step that changed the frame's shape (trim) must carry the flags itself."""
    if after.flags is not None:
        return after.flags
    if after.mask is None:
        return None
    if before.mask is not None and after.mask is before.mask:  # passed on untouched: no work
        return before.flags
    return reconcile(before.flags, after.mask)


def names(value: int) -> list[str]:
    """The names of the bits set in ``value`` (``names(24) == ['SATURATED', 'COSMIC']``)."""
    return [name for bit, (name, _) in TABLE.items() if value & bit]


def write_table(header: fits.Header) -> None:
    """One ``CF_DQ<value>`` card per bit, so the file says what its MASK values mean."""
    header["CF_DQ"] = ("bits", "MASK holds DQ bits OR-ed together; 0 = good")
    for bit, (name, meaning) in TABLE.items():
        header[f"CF_DQ{bit}"] = (name, meaning)


def from_file(data: np.ndarray, header: fits.Header) -> np.ndarray:
    """A MASK extension read back as uint16 bits; a file without the table (written before the
    bits: 1 meant "masked") has its flagged pixels read as :data:`MASKED`."""
    data = np.asarray(data)
    if header.get("CF_DQ") != "bits":
        return np.where(data != 0, DTYPE(MASKED), DTYPE(0)).astype(DTYPE)
    return data.astype(DTYPE)


def to_file(mask: np.ndarray) -> tuple[np.ndarray, fits.Header]:
    """The MASK extension's data (int16: plain BITPIX 16, no BZERO) and its header with the table."""
    values = bits(mask)
    assert values is not None
    if values.size and int(values.max()) > 0x7FFF:
        raise ValueError(f"DQ value {int(values.max())} does not fit the MASK extension (bits 0-14)")
    header = fits.Header()
    write_table(header)
    return values.view(np.int16), header

"""Stack reduced exposures of one field on a shared pixel grid with the combine engine.

The pixels the rejection removed from each input are that input's cosmic-ray candidates:
with repeated exposures, a pixel far above the others at the same place is a hit, the
textbook way to find cosmic rays without modelling their shape. Inputs are never modified:
:func:`write_cr_masks` writes one new file per input.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData, StdDevUncertainty

from ccdflow import __version__
from ccdflow.framework import dq
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import read_headers, read_product, sha256_file
from ccdflow.framework.io.fitswrite import atomic_write
from ccdflow.framework.io.provenance import card_text
from ccdflow.framework.io.spool import Spool, combine_frames
from ccdflow.framework.numerics.combine import Clip, Method

Match = Literal["none", "offset", "scale"]
#: Suffix of the cosmic-ray mask written next to each input: ``frame.fits`` -> ``frame.crmask.fits``.
CR_SUFFIX = ".crmask.fits"


@dataclass
class Stacked:
    """The stack, and per input the number of pixels rejection removed (and where, if asked)."""

    ccd: CCDData
    paths: list[str]
    n_rejected: list[int]
    rejected: list[np.ndarray] = field(default_factory=list)


def check_grid(paths: Sequence[str | Path], mix_filters: bool = False) -> tuple[int, int]:
    """The shared SCI shape, or an error naming the files whose shapes differ (headers only);
    likewise the filters (``CF_FILT``, written by the reduction from the header map) unless
    ``mix_filters``: R and V frames of one field combined give an image of neither band."""
    if not paths:
        raise UnprocessableInputError("nothing to stack: no input files")
    shapes: dict[tuple[int, int], str] = {}
    filters: dict[str, list[str]] = {}
    for path in paths:
        headers = read_headers(path)
        if "SCI" not in headers:
            raise UnprocessableInputError("not a ccdflow product (no SCI extension)", path=str(path))
        h = headers["SCI"]
        shapes.setdefault((h.get("NAXIS2", 0), h.get("NAXIS1", 0)), str(path))
        band = cards.FILT.get(headers[0])
        if band:  # products made before CF_FILT, or of a camera without filters, say nothing
            filters.setdefault(band, []).append(str(path))
    if len(shapes) > 1:
        detail = "; ".join(f"{ny}x{nx} in {p}" for (ny, nx), p in shapes.items())
        raise UnprocessableInputError(f"inputs do not share a pixel grid: {detail}")
    if len(filters) > 1 and not mix_filters:
        detail = "; ".join(f"{band}: {len(files)} ({Path(files[0]).name}{', ...' if len(files) > 1 else ''})"
                           for band, files in sorted(filters.items()))
        raise UnprocessableInputError(f"inputs are of different filters ({detail}); stack one filter "
                                      "at a time, or pass --mix-filters (mix_filters=True) to combine them")
    return next(iter(shapes))


def stack_products(
    paths: Sequence[str | Path], *, method: Method = "median",
    clip: Clip = "sigma", sigma_low: float = 3.0, sigma_high: float = 3.0,
    match: Match = "offset", memory_limit: int | None = None, keep_rejected: bool = False,
    scratch_dir: str | Path | None = None, progress: Callable[[str], None] | None = None,
    mix_filters: bool = False,
) -> Stacked:
    """Combine products (SCI/UNCERT/MASK) pixel by pixel; masked input pixels never count.

    ``match`` brings the inputs to a common level first: ``offset`` subtracts each frame's
    median difference to the median of medians (sky-dominated frames whose sky changed),
    ``scale`` multiplies by the ratio (transparency changes), ``none`` leaves them.
    """
    files = [str(p) for p in paths]
    check_grid(files, mix_filters)
    if clip == "sigma" and len(files) < 3:
        raise UnprocessableInputError(f"sigma clipping needs at least 3 frames, got {len(files)}; "
                                      "use clip='minmax' or 'none'")
    n = len(files)
    header = fits.Header()
    with Spool(n, scratch_dir) as spool:
        levels = []
        for i, path in enumerate(files):
            ccd = read_product(path)
            spool.put(i, ccd.data, ccd.mask, path)
            good = ~spool.mask[i]
            levels.append(float(np.median(spool.data[i][good])) if good.any() else np.nan)
            header = header if i else ccd.header.copy()
            if progress is not None:
                progress(path)
        if not np.all(np.isfinite(levels)):
            bad = [p for p, v in zip(files, levels, strict=True) if not np.isfinite(v)]
            raise UnprocessableInputError(f"inputs with no unmasked pixel: {', '.join(bad)}")
        ref = float(np.median(levels))
        scales = None
        if match == "offset":
            for i, level in enumerate(levels):
                spool.data[i] -= np.float32(level - ref)
        elif match == "scale":
            if ref <= 0 or min(levels) <= 0:
                raise UnprocessableInputError(f"cannot scale frames with medians {levels}: not all > 0")
            scales = [ref / v for v in levels]
        rejected = [np.memmap(spool.directory / f"rej{i}.u8", np.bool_, "w+", shape=spool.data.shape[1:])
                    for i in range(n)]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            options = {"n_low": 1, "n_high": 1} if clip == "minmax" else {}
            kwargs = dict(method=method, clip=clip, sigma_low=sigma_low, sigma_high=sigma_high,
                          scales=scales, **options)
            try:
                result = combine_frames(spool.frames, spool.masks, memory_limit, rejected_out=rejected,
                                        **kwargs)
            except NotImplementedError:  # an engine without rejected_out: same rule, here
                result = combine_frames(spool.frames, spool.masks, memory_limit, **kwargs)
                _reject_like_engine(spool, scales, clip, sigma_low, sigma_high, rejected)
        n_rejected = [int(np.count_nonzero(r)) for r in rejected]
        kept = [np.array(r) for r in rejected] if keep_rejected else []
        del rejected
    mask = result.n_used == 0
    _stack_header(header, files, method, clip, sigma_low, sigma_high, match, levels, n_rejected)
    data = np.where(mask, np.float32(0), result.data).astype(np.float32)
    ccd = CCDData(data, unit=header.get("BUNIT", "adu"), header=header, mask=mask if mask.any() else None,
                  flags=dq.flag(None, mask, dq.NO_DATA) if mask.any() else None,
                  uncertainty=StdDevUncertainty(np.nan_to_num(result.error)))
    return Stacked(ccd, files, n_rejected, kept)


def _reject_like_engine(spool: Spool, scales: Sequence[float] | None, clip: str, low: float, high: float,
                        rejected: Sequence[np.ndarray], rows: int = 128) -> None:
    """Pixels the combine engine's documented rule removes (one-pass median/MAD-std sigma clip,
    or each pixel's lowest and highest value), for engines that cannot report them."""
    n, ny = spool.n, spool.data.shape[1]
    scale = np.ones(n, np.float32) if scales is None else np.asarray(scales, np.float32)
    for r0 in range(0, ny, rows):
        band = slice(r0, min(ny, r0 + rows))
        stack = np.array(spool.data[:, band], np.float32) * scale[:, None, None]
        stack[spool.mask[:, band]] = np.nan
        if clip == "sigma":
            centre = np.nanmedian(stack, axis=0)
            spread = 1.4826 * np.nanmedian(np.abs(stack - centre), axis=0)
            with np.errstate(invalid="ignore"):
                out = (stack < centre - low * spread) | (stack > centre + high * spread)
        elif clip == "minmax":
            filled = np.where(np.isnan(stack), np.inf, stack)
            out = np.zeros(stack.shape, bool)
            rows_i, cols_i = np.indices(stack.shape[1:])
            out[np.argmin(filled, axis=0), rows_i, cols_i] = True
            out[np.argmax(np.where(np.isnan(stack), -np.inf, stack), axis=0), rows_i, cols_i] = True
            out &= ~np.isnan(stack)
        else:
            continue
        for i in range(n):
            rejected[i][band] = out[i]


def _stack_header(header: fits.Header, paths: list[str], method: str, clip: str, low: float,
                  high: float, match: str, levels: list[float], n_rejected: list[int]) -> None:
    for key in [k for k in header if k.startswith(("CF_I0", "CF_S0"))]:
        header.remove(key, ignore_missing=True, remove_all=True)
    header["CF_PTYPE"] = ("stack", "ccdflow product type")
    header["NCOMBINE"] = (len(paths), "exposures stacked")
    cards.METH.put(header, method)
    cards.CLIP.put(header, clip)
    if clip == "sigma":
        header["CF_SIGLO"], header["CF_SIGHI"] = (low, "sigma clip low"), (high, "sigma clip high")
    header["CF_MATCH"] = (match, "level matching before combining")
    for i, (path, level, rej) in enumerate(zip(paths, levels, n_rejected, strict=True), 1):
        header[f"CF_I{i:04d}"] = (card_text(Path(path).name), "stacked input")
        header[f"CF_S{i:04d}"] = sha256_file(path)
        header[f"CF_L{i:04d}"] = (round(level, 4), "input median before matching")
        header[f"CF_R{i:04d}"] = (rej, "pixels rejected from this input")
    cards.VERS.put(header, __version__)


def cr_mask_path(path: str | Path, directory: str | Path | None = None) -> Path:
    path = Path(path)
    stem = path.name.removesuffix(".gz").removesuffix(".fits").removesuffix(".fit")
    return Path(directory or path.parent) / f"{stem}{CR_SUFFIX}"


def write_cr_masks(stacked: Stacked, stack_path: str | Path,
                   directory: str | Path | None = None) -> list[Path]:
    """One uint8 mask per input (1 = rejected by the stack), next to it or in ``directory``;
    each names its input (and checksum) and the stack that found it."""
    if len(stacked.rejected) != len(stacked.paths):
        raise ValueError("stack_products(..., keep_rejected=True) keeps the rejected pixels")
    out = []
    stack_sha = sha256_file(stack_path) if Path(stack_path).exists() else None
    for path, rejected in zip(stacked.paths, stacked.rejected, strict=True):
        header = fits.Header()
        header["CF_PTYPE"] = ("crmask", "pixels a stack rejected from this input")
        header["CF_INPF"] = (card_text(Path(path).name), "input the mask belongs to")
        header["CF_INPS"] = sha256_file(path)
        header["CF_STKF"] = (card_text(Path(stack_path).name), "stack that rejected them")
        if stack_sha:
            header["CF_STKS"] = stack_sha
        header[cards.CLIP.keyword] = cards.CLIP.get(stacked.ccd.header)
        header["CF_NCR"] = (int(np.count_nonzero(rejected)), "pixels flagged")
        target = cr_mask_path(path, directory)
        atomic_write(fits.HDUList([fits.PrimaryHDU(header=header),
                                   fits.ImageHDU(rejected.astype(np.uint8), name="CRMASK")]), target)
        out.append(target)
    return out

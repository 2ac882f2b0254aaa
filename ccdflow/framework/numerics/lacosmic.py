"""L.A.Cosmic (van Dokkum 2001) as astroscrappy 1.3 computes it, in numba over both cores.

:func:`detect_cosmics` takes the subset of ``astroscrappy.detect_cosmics``'s parameters the
cosmicray step uses and returns the same (mask, cleaned image): the same float32 operations
in the same order, the same edges, so the masks are identical rather than close
(tests/test_lacosmic_engine.py compares them on random and real frames). Where the time goes
differs: the 2x block-replicated Laplacian is a 5-point stencil on the frame's grid
(:mod:`.lacosmic_stencils`), the median filters are selection networks vectorised along rows
(:mod:`.lacosmic_medians`) and the tests, growths and cleaning are one fused pass each
(:mod:`.lacosmic_masks`); no array larger than the frame is made.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numba
import numpy as np

from ccdflow.framework.numerics.lacosmic_masks import candidates, clean_mean, dilate, grown, noise_of
from ccdflow.framework.numerics.lacosmic_medians import median_filter
from ccdflow.framework.numerics.lacosmic_stencils import laplacian_to_noise

#: detect_cosmics options this engine computes (the others: astroscrappy).
SUPPORTED = {"fsmode": ("median",), "cleantype": ("meanmask",)}


def supports(**options) -> bool:
    """Whether :func:`detect_cosmics` computes these astroscrappy options (else use astroscrappy)."""
    return all(options.get(name, allowed[0]) in allowed for name, allowed in SUPPORTED.items())


#: Rows a thread takes at a time: dynamic scheduling, so a core busy elsewhere does not stall
#: the others at the end of a static half.
ROWS_PER_CHUNK = 16


@contextmanager
def _threads(threads: int | None) -> Iterator[None]:
    """numba's threads for one call: ``threads``, else OMP_NUM_THREADS when set (astroscrappy's
    OpenMP would use that many: Dask's worker processes set 1, one frame per core), else
    numba's; never more than numba started. Restored afterwards."""
    previous = numba.get_num_threads()
    wanted = threads or int(os.environ.get("OMP_NUM_THREADS") or 0) or previous
    numba.set_num_threads(max(1, min(wanted, numba.config.NUMBA_NUM_THREADS)))  # type: ignore[attr-defined]
    try:
        with numba.parallel_chunksize(ROWS_PER_CHUNK):
            yield
    finally:
        numba.set_num_threads(previous)


def _f32(value: float | np.floating) -> float:
    """``value`` as astroscrappy holds it (a C float) and hands it back to numpy."""
    return float(np.float32(value))


def _lower_median(values: np.ndarray) -> float:
    """astroscrappy's median(): the lower middle value for an even count."""
    if values.size == 0:
        return 0.0
    return float(np.partition(values, (values.size - 1) // 2)[(values.size - 1) // 2])


def _background_levels(data: np.ndarray, variance: np.ndarray, mask: np.ndarray,
                       first_values: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> list[float]:
    """astroscrappy's background levels of data and variance (medians of the unmasked pixels
    before any cleaning), from the current arrays with the cleaned pixels' first values put
    back: they are needed only where a 5x5 window has no good pixel, which is rare."""
    levels = []
    for k, values in enumerate((data, variance)):
        before = values.copy().ravel()
        for new, *originals in first_values:
            before[new] = originals[k]
        levels.append(_lower_median(before[mask.ravel() == 0]))
    return levels


def _bad_pixels(data: np.ndarray, inmask: np.ndarray | None, satlevel: float, separable: bool
                ) -> np.ndarray:
    """astroscrappy's update_mask: ``inmask`` grown by 3x3, with saturated stars (pixels at
    ``satlevel`` whose 7x7 median exceeds a tenth of it) grown twice by 5x5."""
    out = np.zeros(data.shape, np.uint8)
    if inmask is not None:
        dilate(np.ascontiguousarray(inmask, np.uint8), 1, out)
    saturated = data >= np.float32(satlevel)
    if saturated.any():
        tenth = np.float32(_f32(satlevel) / 10.0)  # astroscrappy: a C float over 10.0, as float32
        saturated &= median_filter(data, 3 if separable else 2, separable) > tenth
        once, twice = np.empty_like(out), np.empty_like(out)
        dilate(saturated.view(np.uint8), 2, once)
        dilate(once, 2, twice)
        out |= twice
    return out


def detect_cosmics(
    indat: np.ndarray, inmask: np.ndarray | None = None, inbkg: np.ndarray | None = None,
    invar: np.ndarray | None = None, *,
    sigclip: float = 4.5, sigfrac: float = 0.3, objlim: float = 5.0, gain: float = 1.0,
    readnoise: float = 6.5, satlevel: float = 65536.0, niter: int = 4, sepmed: bool = True,
    cleantype: str = "meanmask", fsmode: str = "median", psfmodel: str = "gauss",
    psffwhm: float = 2.5, psfsize: int = 7, psfk: np.ndarray | None = None, psfbeta: float = 4.765,
    verbose: bool = False, threads: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(cosmic-ray mask, cleaned image) as ``astroscrappy.detect_cosmics`` returns them.

    The PSF options are accepted for astroscrappy's signature: only ``fsmode="convolve"``,
    which this engine declines, reads them; ``verbose`` prints nothing. Raises ValueError
    for the options :func:`supports` declines rather than computing something else.
    ``threads``: see :func:`_threads`.
    """
    if not supports(fsmode=fsmode, cleantype=cleantype):
        raise ValueError(f"ccdflow's L.A.Cosmic has fsmode {SUPPORTED['fsmode']} and cleantype "
                         f"{SUPPORTED['cleantype']}, not {fsmode!r}, {cleantype!r}: use astroscrappy")
    with _threads(threads):
        return _detect(indat, inmask, inbkg, invar, sigclip, sigfrac, objlim, gain, readnoise,
                       satlevel, niter, sepmed)


def _detect(indat: np.ndarray, inmask: np.ndarray | None, inbkg: np.ndarray | None,
            invar: np.ndarray | None, sigclip: float, sigfrac: float, objlim: float, gain: float,
            readnoise: float, satlevel: float, niter: int, sepmed: bool
            ) -> tuple[np.ndarray, np.ndarray]:
    """:func:`detect_cosmics` with its options checked."""
    gain32 = _f32(gain)
    data = np.ascontiguousarray(np.asarray(indat) * gain32, dtype=np.float32)
    bkg = None if inbkg is None else np.ascontiguousarray(np.asarray(inbkg) * gain32, np.float32)
    if invar is not None:
        variance = np.ascontiguousarray(np.asarray(invar) * _f32(np.float32(gain) ** 2), np.float32)
    else:
        variance = data if bkg is None else data - bkg
        variance = variance + _f32(np.float32(readnoise) * np.float32(readnoise))
    if invar is not None and bkg is not None:
        variance -= bkg
    mask = _bad_pixels(data, inmask, satlevel, sepmed)
    if bkg is not None:
        data -= bkg
    levels: list[float] = []  # the background medians: only if a window has no good pixel
    first_values: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # before cleaning

    shape = data.shape
    crmask = np.zeros(shape, bool)
    noise, s, sp, fine, fine_med, scratch = (np.empty(shape, np.float32) for _ in range(6))
    first, second = np.empty(shape, np.uint8), np.empty(shape, np.uint8)
    limit, low = _f32(sigclip), _f32(np.float32(sigfrac) * np.float32(sigclip))
    for _ in range(niter):
        median_filter(variance, 3 if sepmed else 2, sepmed, sp, scratch)
        noise_of(sp, data if bkg is None else bkg, bkg is not None, noise)
        laplacian_to_noise(data, noise, s)
        median_filter(s, 3 if sepmed else 2, sepmed, sp, scratch)
        median_filter(data, 2 if sepmed else 1, sepmed, fine, scratch)
        median_filter(fine, 4 if sepmed else 3, sepmed, fine_med, scratch)
        candidates(s, sp, fine, fine_med, noise, mask, limit, _f32(objlim), first)
        grown(first, mask, sp, limit, second)
        if grown(second, mask, sp, low, first) == 0:
            break
        new = np.flatnonzero(first.view(bool) & ~crmask)
        first_values.append((new, data.ravel()[new], variance.ravel()[new]))
        crmask |= first.view(bool)
        for k, values in enumerate((data, variance)):
            if clean_mean(values, crmask, mask, 0.0, False):
                levels = levels or _background_levels(data, variance, mask, first_values)
                clean_mean(values, crmask, mask, levels[k], True)
    if bkg is not None:
        data += bkg
    data /= np.float32(gain32)
    return crmask, data


"""Levels of a normalised type's inputs and master (a flat), and the statistics of a master, per
colour channel on a Bayer sensor and over the whole frame otherwise.

A flat's job is the pixels' relative response. Divided by one global median, a colour flat
keeps the lamp's (or twilight's) colour, R/G/B = 0.8/1/0.6 say, and every science frame divided
by it comes out tinted by the inverse. Each channel is therefore divided by its own level, the
inputs before they are combined (a twilight reddens from one flat to the next) and the master
after. Where the colours are comes from ``ccdflow.framework.headers.bayer``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.frame import FrameMeta
from ccdflow.framework.headers.bayer import (
    CHANNELS,
    Mosaic,
    channel_keyword,
    channel_levels,
    divide_channels,
    mosaic_of,
)

Levels = dict[str, float]


def _refuse_unusable(levels: Levels, what: str, path: str | None) -> None:
    bad = {c or "all": v for c, v in levels.items() if not np.isfinite(v) or v <= 0}
    if bad:
        figures = ", ".join(f"{c} {v:.4g}" for c, v in bad.items())
        raise UnprocessableInputError(
            f"{what} has median {figures} ADU after bias/dark subtraction; a flat needs a positive "
            "level (in every colour channel) to be scaled (shutter closed or lamp off?)", path=path)


def input_levels(ccd: CCDData, meta: FrameMeta) -> tuple[float, Levels, Mosaic | None]:
    """A preprocessed input's median over its good pixels, its per-channel medians ({'': median}
    on a monochrome sensor) and its mosaic. A level <= 0 or NaN is refused."""
    mosaic = mosaic_of(ccd.header, ccd.shape[0], meta.path)
    # no good-pixel array and no copy of the good pixels: the median skips NaN, inf and masked
    # pixels where they lie (36-50 -> ~12 ms a 2k frame)
    data, mask = np.asarray(ccd.data), None if ccd.mask is None else np.asarray(ccd.mask, bool)
    overall = channel_levels(data, mask, None)
    levels = overall if mosaic is None else channel_levels(data, mask, mosaic)
    _refuse_unusable(overall, "flat", meta.path)
    _refuse_unusable(levels, "flat", meta.path)
    return overall[""], levels, mosaic


def normalised_input(ccd: CCDData, levels: Levels, mosaic: Mosaic | None) -> np.ndarray:
    """A colour input divided by each channel's level (a new array); a monochrome one is left
    to the combine's scale (its pixels untouched, so monochrome masters are as before)."""
    if mosaic is None:
        return np.asarray(ccd.data)
    data = np.array(ccd.data, np.float32)
    divide_channels(data, levels, mosaic)
    return data


def normalise_master(data: np.ndarray, error: np.ndarray, mask: np.ndarray, header: fits.Header,
                     inputs: str, *, in_place: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """The combined master and its error divided by its median, per colour channel when the
    inputs' header has a Bayer pattern (each channel's median is then 1). ``in_place``: the
    caller's float32 ``data`` and ``error`` (a master just combined) are divided themselves."""
    mosaic = mosaic_of(header, data.shape[0])
    if mosaic is None:
        # np.nanmedian(data[~mask]) bit for bit (NaN left out, inf kept), without the copy
        from ccdflow.framework.numerics.exact_median import median_of  # numba: when used

        norm = median_of([data], [mask], finite_only=False)
        if not np.isfinite(norm) or norm <= 0:
            raise UnprocessableInputError(f"combined flat has median {norm:.4g}; cannot normalise "
                                          f"(inputs {inputs})")
        if in_place and data.dtype == error.dtype == np.float32:
            data /= np.float32(norm)
            error /= np.float32(norm)
            return data, error
        return data / np.float32(norm), error / np.float32(norm)
    levels = channel_levels(data, mask, mosaic)
    _refuse_unusable(levels, f"combined flat (inputs {inputs})", None)
    if not (in_place and data.dtype == error.dtype == np.float32):
        data, error = np.array(data, np.float32), np.array(error, np.float32)
    divide_channels(data, levels, mosaic)
    divide_channels(error, levels, mosaic)
    return data, error


def channel_stats(stats_of: Any, data: np.ndarray, mask: np.ndarray, header: fits.Header,
                  metas: Sequence[FrameMeta], levels: Sequence[float],
                  channel_levels_in: Sequence[Levels]) -> dict[str, tuple]:
    """A colour master's statistics per channel: ``stats_of(kind-free data, metas, levels)``
    (the builder's own ``master_stats`` for the type) run on each channel's pixels, with each
    input's level in that channel where the type measured one (a flat's) and its one level
    otherwise (a bias's overscan); keywords from :func:`channel_keyword`. Empty for a
    monochrome master."""
    mosaic = mosaic_of(header, data.shape[0])
    if mosaic is None:
        return {}
    out: dict[str, tuple] = {}
    for channel in CHANNELS:
        pixels = np.concatenate([data[r, c][~mask[r, c]] for r, c in mosaic.views(channel)])
        per_input = [lv.get(channel, level) for lv, level in zip(channel_levels_in, levels, strict=True)]
        for key, (value, comment) in stats_of(pixels, metas, per_input).items():
            out[channel_keyword(key, channel)] = (value, f"{comment} [{channel}]"[:46])
    return out

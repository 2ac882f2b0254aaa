"""What UNCERT predicts for the mean of a row of a product, where part of each pixel's variance
is common to its whole row (the overscan level subtracted per row, in the frame and in the
masters it used): the scorecard's check of issue 14 item 6. Reads product and master headers
only, like the rest of the scorecard."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from astropy.io import fits


def row_variance(header: fits.Header, masters: Path) -> np.ndarray:
    """The part of each product pixel's variance (ADU^2, per pixel) that every pixel of its row
    shares: the overscan level subtracted from the science frame (``CF_ON*``), the master
    bias's (its inputs' over their count; what is left of it after the scaled dark, which holds
    the same bias, is subtracted: a factor (1 - s)^2) and the master dark's, scaled by s^2;
    divided by the flat squared as the flat divides every term. One amplifier's figure (the
    mean over the cards of several)."""
    def card_mean(h: fits.Header) -> float:
        values = [float(h[k]) for k in h if k.startswith("CF_ON")]
        return float(np.mean(values)) if values else 0.0

    def master(card: str) -> fits.Header | None:
        name = header.get(card)
        return fits.getheader(masters / name) if name and (masters / name).is_file() else None

    scale = float(header.get("CF_DKSCL", 0.0))
    total = card_mean(header)
    if (bias := master("CF_BIASF")) is not None:
        total += (1.0 - scale) ** 2 * card_mean(bias) if header.get("CF_DARKF") else card_mean(bias)
    if (dark := master("CF_DARKF")) is not None:
        total += scale**2 * card_mean(dark)
    flat_name = header.get("CF_FLATF")
    if flat_name and (masters / flat_name).is_file():
        with fits.open(masters / flat_name) as flat:
            return total / np.asarray(flat["SCI"].data if "SCI" in flat else flat[0].data, float) ** 2
    return np.full(1, total)


def row_scatter(resid: np.ndarray, unc: np.ndarray, good: np.ndarray, shared: np.ndarray) -> float:
    """Scatter of the row means of the residual over what UNCERT predicts for them, 1 when the
    error plane holds every row-correlated term: of a pixel's variance unc^2, ``shared`` is
    common to its row (fully correlated), the rest independent, so a row mean of n pixels has
    variance (sum(unc^2 - shared) + (sum sqrt(shared))^2) / n^2."""
    shared = np.broadcast_to(shared, unc.shape)
    n = good.sum(axis=1)
    rows = n >= resid.shape[1] // 2
    mean = np.where(good, resid, 0.0).sum(axis=1)[rows] / n[rows]
    independent = np.where(good, np.clip(unc**2 - shared, 0.0, None), 0.0).sum(axis=1)
    common = np.where(good, np.sqrt(shared), 0.0).sum(axis=1) ** 2
    predicted = np.sqrt(independent + common)[rows] / n[rows]
    return float(np.std(mean / predicted))

"""What the telescope sees: sky background and a field of stars with Gaussian or Moffat PSFs."""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np

from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.spec import SimulationSpec

# Dark-site sky in e-/s/pixel for a ~1 m telescope; red filters see the brighter sky.
SKY_RATES = {"U": 100.0, "B": 150.0, "V": 250.0, "R": 350.0, "I": 500.0, "u": 100.0,
             "g": 200.0, "r": 300.0, "i": 400.0, "z": 500.0, "Ha": 100.0, "L": 500.0}
FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def sky_rate(spec: SimulationSpec, filter_name: str) -> float:
    """Sky e-/s/pixel: the spec's value, the built-in table, or 100-500 derived from the name."""
    if filter_name in spec.sky_rates:
        return float(spec.sky_rates[filter_name])
    if filter_name in SKY_RATES:
        return SKY_RATES[filter_name]
    return 100.0 + zlib.crc32(filter_name.encode()) % 401


@dataclass(frozen=True)
class StarField:
    """One pointing: 0-based positions and count rates (e-/s) before the colour of each filter."""

    y: np.ndarray
    x: np.ndarray
    rate: np.ndarray
    saturating: np.ndarray

    def rates_in(self, spec: SimulationSpec, filter_name: str) -> np.ndarray:
        """Count rates in a filter: each star has its own colour; bright ones stay saturating."""
        colour = rng_for(spec.seed, "colour", filter_name).uniform(0.7, 1.3, self.rate.size)
        colour = np.where(self.saturating, np.maximum(colour, 1.0), colour)
        return self.rate * colour


def make_star_field(spec: SimulationSpec) -> StarField:
    """Faint stars anywhere, plus stars that saturate kept in the middle so their bleeds fit."""
    rng = rng_for(spec.seed, "stars")
    ny, nx = spec.shape
    n, m = spec.n_stars, spec.n_saturated_stars
    y = np.concatenate([rng.uniform(2, ny - 3, n), rng.uniform(0.25 * ny, 0.75 * ny, m)])
    x = np.concatenate([rng.uniform(2, nx - 3, n), rng.uniform(0.2 * nx, 0.8 * nx, m)])
    faint = 10.0 ** rng.uniform(np.log10(30.0), np.log10(3000.0), n)
    # a Gaussian peak holds 1/(2 pi sigma^2) of the flux: aim 3-8 full wells above it
    sigma = spec.fwhm * FWHM_TO_SIGMA
    bright = rng.uniform(3.0, 8.0, m) * spec.full_well * 2 * np.pi * sigma**2 / spec.science_exptime
    saturating = np.concatenate([np.zeros(n, bool), np.ones(m, bool)])
    return StarField(y=y, x=x, rate=np.concatenate([faint, bright]), saturating=saturating)


def psf(kind: str, fwhm: float, beta: float, dy: np.ndarray, dx: np.ndarray) -> np.ndarray:
    """Unnormalised PSF at offsets (dy, dx) from the centre."""
    r2 = dy**2 + dx**2
    if kind == "gaussian":
        return np.exp(-0.5 * r2 / (fwhm * FWHM_TO_SIGMA) ** 2)
    alpha = fwhm / (2.0 * np.sqrt(2.0 ** (1.0 / beta) - 1.0))
    return (1.0 + r2 / alpha**2) ** -beta


def render_stars(shape: tuple[int, int], y: np.ndarray, x: np.ndarray, flux: np.ndarray,
                 kind: str, fwhm: float, beta: float) -> np.ndarray:
    """Stars (total e- in `flux`) as pixel-centre samples, each stamp normalised to its flux."""
    image = np.zeros(shape, np.float32)
    ny, nx = shape
    for yc, xc, f in zip(y, x, flux, strict=True):
        radius = int(np.ceil((12.0 if f > 1e6 else 5.0) * fwhm))
        iy, ix = int(round(yc)), int(round(xc))
        yy, xx = np.ogrid[iy - radius: iy + radius + 1, ix - radius: ix + radius + 1]
        stamp = psf(kind, fwhm, beta, yy - yc, xx - xc)
        stamp *= f / stamp.sum()
        y0, y1 = max(0, iy - radius), min(ny, iy + radius + 1)
        x0, x1 = max(0, ix - radius), min(nx, ix + radius + 1)
        if y0 < y1 and x0 < x1:
            image[y0:y1, x0:x1] += stamp[y0 - iy + radius: y1 - iy + radius,
                                         x0 - ix + radius: x1 - ix + radius]
    return image

"""Illumination: vignetting and out-of-focus dust shadows, combined with the pixel response into
the flat field of each filter and night."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from ccdflow.simulator.detector import Detector
from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.spec import SimulationSpec

OBSTRUCTION = 0.45  # secondary-mirror shadow: the inner radius of a dust donut, relative


@dataclass(frozen=True)
class Donut:
    """The shadow of one dust grain: an annulus of fractional `depth`, 0-based pixel centre."""

    y: float
    x: float
    radius: float
    depth: float


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * z))


def dust_pattern(shape: tuple[int, int], donuts: list[Donut]) -> np.ndarray:
    """Transmission (<= 1) of a set of dust donuts, each computed only in its own box."""
    out = np.ones(shape, np.float32)
    ny, nx = shape
    for d in donuts:
        reach = d.radius + 4.0
        y0, y1 = max(0, int(d.y - reach)), min(ny, int(d.y + reach) + 1)
        x0, x1 = max(0, int(d.x - reach)), min(nx, int(d.x + reach) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.ogrid[y0:y1, x0:x1]
        r = np.hypot(yy - d.y, xx - d.x)
        ring = _sigmoid(d.radius - r) * _sigmoid(r - OBSTRUCTION * d.radius)
        out[y0:y1, x0:x1] *= (1.0 - d.depth * ring).astype(np.float32)
    return out


def vignetting(shape: tuple[int, int], strength: float, centre: tuple[float, float]) -> np.ndarray:
    """Radial fall-off reaching about `strength` at the corners."""
    ny, nx = shape
    yy, xx = np.ogrid[0:ny, 0:nx]
    corner2 = ((ny - 1) / 2.0) ** 2 + ((nx - 1) / 2.0) ** 2
    r2 = ((yy - centre[0]) ** 2 + (xx - centre[1]) ** 2) / corner2
    return (1.0 - strength * r2).astype(np.float32)


def _random_donut(rng: np.random.Generator, shape: tuple[int, int]) -> Donut:
    ny, nx = shape
    return Donut(y=rng.uniform(0, ny - 1), x=rng.uniform(0, nx - 1),
                 radius=rng.uniform(0.03, 0.08) * min(shape) + 3.0, depth=rng.uniform(0.02, 0.05))


@dataclass(frozen=True)
class Optics:
    """Vignetting and dust: the window dust (shared by all filters) drifts from night to night."""

    spec: SimulationSpec
    centre: tuple[float, float]
    window_dust: tuple[Donut, ...]

    def window_dust_on(self, night: int) -> list[Donut]:
        """Night 1 has the base dust; each later night grains shift and some settle anew."""
        donuts = list(self.window_dust)
        for k in range(2, night + 1):
            rng = rng_for(self.spec.seed, "dust", k)
            donuts = [replace(d, y=d.y + rng.normal(0, 1.5), x=d.x + rng.normal(0, 1.5),
                              depth=d.depth * float(np.exp(rng.normal(0, 0.1)))) for d in donuts]
            if rng.uniform() < 0.5:
                donuts.append(_random_donut(rng, self.spec.shape))
        return donuts

    def filter_dust(self, filter_name: str) -> list[Donut]:
        """One grain on the filter itself: different for every filter, steady across nights."""
        return [_random_donut(rng_for(self.spec.seed, "filter dust", filter_name), self.spec.shape)]

    def vignetting_strength(self, filter_name: str) -> float:
        rng = rng_for(self.spec.seed, "vignetting", filter_name)
        return self.spec.vignetting * rng.uniform(0.9, 1.1)


def make_optics(spec: SimulationSpec) -> Optics:
    rng = rng_for(spec.seed, "optics")
    ny, nx = spec.shape
    centre = ((ny - 1) / 2 + rng.normal(0, 0.03 * ny), (nx - 1) / 2 + rng.normal(0, 0.03 * nx))
    donuts = tuple(_random_donut(rng, spec.shape) for _ in range(int(rng.integers(3, 6))))
    return Optics(spec=spec, centre=centre, window_dust=donuts)


def flat_field(optics: Optics, detector: Detector, filter_name: str, night: int) -> np.ndarray:
    """Truth flat of a filter on a night: illumination times pixel response, median 1."""
    shape = optics.spec.shape
    flat = vignetting(shape, optics.vignetting_strength(filter_name), optics.centre)
    flat *= dust_pattern(shape, optics.window_dust_on(night) + optics.filter_dust(filter_name))
    flat *= detector.response
    flat /= np.float32(np.median(flat))
    return flat

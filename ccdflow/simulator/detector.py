"""The chip itself: bias structure, dark-current map, pixel response and defects.

All of it is fixed for a seed and shared by every night, as on a real camera.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ccdflow.simulator.amplifiers import amp_bias, glow_map
from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.spec import SimulationSpec

# Bits of the truth bad-pixel map.
HOT, DEAD, BAD_COLUMN = 1, 2, 4

HOT_COLUMN_FACTOR = 15.0  # extra dark current of the hot column, in units of the median rate
DARK_SPREAD = 0.4  # sigma of ln(rate): the log-normal width of ordinary pixels


@dataclass(frozen=True)
class Detector:
    """Fixed detector truth; arrays are float32 except the uint8 bad-pixel map."""

    bias_pattern: np.ndarray  # ADU, whole raw frame incl. overscan, mean level excluded
    dark_rate: np.ndarray  # e-/s at the reference temperature, data area
    response: np.ndarray  # relative quantum efficiency (PRNU, dead pixels, dead column)
    bpm: np.ndarray  # HOT | DEAD | BAD_COLUMN bits, data area
    hot_column: tuple[int, int]  # (x, last affected row), 0-based
    dead_column: tuple[int, int]  # (x, first affected row), 0-based
    glow: np.ndarray  # e-/s (at the reference temperature if thermal: then in dark_rate too)

    def bias(self, level: float) -> np.ndarray:
        """Bias structure in ADU at a given mean level."""
        return self.bias_pattern + np.float32(level)

    def dark_rate_at(self, spec: SimulationSpec, temperature: float) -> np.ndarray:
        """Dark current (e-/s) at `temperature`, by the spec's dark law, glow included."""
        rate = self.dark_rate * np.float32(spec.dark_factor(temperature))
        if spec.amp_glow > 0 and not spec.amp_glow_thermal:
            rate += self.glow
        return rate


def bias_pattern(spec: SimulationSpec, rng: np.random.Generator) -> np.ndarray:
    """Smooth row gradient plus a fixed column pattern, present in the overscan rows too.

    The row term is what makes per-row overscan correction worth doing; the column term is what
    a master bias must remove.
    """
    ny, nx = spec.shape
    width = spec.raw_width
    y = np.linspace(0.0, 1.0, ny)
    slope, curve = rng.uniform(2.0, 5.0) * rng.choice([-1, 1]), rng.uniform(-2.0, 2.0)
    rows = slope * y + curve * y**2 + 0.5 * np.sin(2 * np.pi * y * rng.uniform(1.0, 3.0))
    cols = rng.normal(0.0, 1.0, width)
    if spec.amplifiers > 1:
        return amp_bias(spec, rows, cols).astype(np.float32)
    offset = spec.amp_bias_offsets[0] if spec.amp_bias_offsets else 0.0
    cols[:] += offset
    # start-of-line ramp of the amplifier
    cols[spec.prescan: spec.prescan + nx] += 6.0 * np.exp(-np.arange(nx) / 4.0)
    return (rows[:, None] + cols[None, :]).astype(np.float32)


def make_detector(spec: SimulationSpec) -> Detector:
    """Draw the detector for `spec.seed`."""
    rng = rng_for(spec.seed, "detector")
    ny, nx = spec.shape
    npix = ny * nx
    bpm = np.zeros(spec.shape, np.uint8)

    bias = bias_pattern(spec, rng)

    dark = spec.dark_rate * np.exp(rng.normal(0.0, DARK_SPREAD, spec.shape))
    flat_dark, flat_bpm = dark.reshape(-1), bpm.reshape(-1)
    n_hot = round(spec.hot_pixel_fraction * npix)
    hot = rng.choice(npix, n_hot, replace=False)
    flat_dark[hot] = spec.dark_rate * 10.0 ** rng.uniform(1.0, 2.0, n_hot)
    flat_bpm[hot] |= HOT

    response = 1.0 + rng.normal(0.0, spec.prnu, spec.shape)
    flat_response = response.reshape(-1)
    n_dead = round(spec.dead_pixel_fraction * npix)
    dead = rng.choice(npix, n_dead, replace=False)
    flat_response[dead] *= rng.uniform(0.0, 0.3, n_dead)
    flat_bpm[dead] |= DEAD

    # Two bad columns, well apart and away from the edges. The hot one glows from its defect
    # down to the serial register (row 0); the dead one blocks charge above its trap.
    x_hot, x_dead = rng.choice(np.arange(nx // 8, 7 * nx // 8, 4), 2, replace=False)
    y_hot, y_dead = rng.integers(ny // 4, 3 * ny // 4, 2)
    dark[: y_hot + 1, x_hot] += HOT_COLUMN_FACTOR * spec.dark_rate
    bpm[: y_hot + 1, x_hot] |= BAD_COLUMN
    response[y_dead:, x_dead] *= rng.uniform(0.02, 0.1)
    bpm[y_dead:, x_dead] |= BAD_COLUMN
    glow = glow_map(spec)
    if spec.amp_glow > 0 and spec.amp_glow_thermal:
        dark += glow

    return Detector(
        bias_pattern=bias,
        dark_rate=dark.astype(np.float32),
        response=response.astype(np.float32),
        bpm=bpm,
        hot_column=(int(x_hot), int(y_hot)),
        dead_column=(int(x_dead), int(y_dead)),
        glow=glow,
    )

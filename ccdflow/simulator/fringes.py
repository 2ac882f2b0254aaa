"""Fringes: night-sky emission lines interfering in the thin silicon of a back-illuminated CCD.

In red filters the sky's OH lines are nearly monochromatic, so light reflected inside the chip
interferes with itself, and the thickness of the silicon, which varies smoothly across the
chip, turns into curved bright and dark bands. The pattern is fixed (the silicon does not
change); its strength follows the line emission, here taken as a fixed fraction of the sky
level per filter (``SimulationSpec.fringe``). It is additive light, so it passes through the
flat like the sky, and a flat (continuum lamp light) does not remove it.
"""

from __future__ import annotations

import numpy as np

from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.spec import SimulationSpec

#: Typical spacing of the bands in pixels: tens of pixels on real red-sensitive CCDs.
BAND_SPACING = 40.0


def fringe_pattern(spec: SimulationSpec, filter_name: str) -> np.ndarray:
    """Zero-mean, unit-RMS float32 pattern of one filter over the data area.

    The cosine of an interference phase that follows the silicon's thickness: a tilt and a
    gentle curvature (polishing), so the bands are curved and about ``BAND_SPACING`` pixels
    apart. Each filter's lines see a different phase, hence a different pattern."""
    rng = rng_for(spec.seed, "fringe", filter_name)
    ny, nx = spec.shape
    yy, xx = np.mgrid[0:ny, 0:nx].astype(np.float64)
    yy, xx = yy / max(ny, nx) - 0.5, xx / max(ny, nx) - 0.5
    cycles = max(ny, nx) / BAND_SPACING
    angle = rng.uniform(0.0, np.pi)
    tilt = np.cos(angle) * yy + np.sin(angle) * xx
    bowl = rng.uniform(-1.0, 1.0, 3) @ np.array([yy**2, xx**2, yy * xx]).reshape(3, -1)
    phase = cycles * (tilt + 0.5 * bowl.reshape(ny, nx)) + rng.uniform(0.0, 1.0)
    pattern = np.cos(2.0 * np.pi * phase)
    pattern -= pattern.mean()
    return (pattern / pattern.std()).astype(np.float32)

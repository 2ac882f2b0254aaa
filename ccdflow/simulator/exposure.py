"""One exposure, electrons first: dark current, flat-fielded light, cosmic rays, then readout."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ccdflow.simulator.cosmics import cosmic_rays, expected_events
from ccdflow.simulator.detector import Detector
from ccdflow.simulator.readout import Readout, bleed, digitise, photon_counts
from ccdflow.simulator.schedule import SimFrame
from ccdflow.simulator.seeds import rng_for
from ccdflow.simulator.sky import StarField, render_stars, sky_rate
from ccdflow.simulator.spec import SimulationSpec

FLAT_LEVEL_SPREAD = 0.03  # dome lamp stability from frame to frame
SKY_SPREAD = 0.10  # sky brightness changes through the night
FWHM_SPREAD = 0.15  # seeing changes through the night
DITHER = 1.5  # pixels, pointing repeatability


@dataclass(frozen=True)
class NightModel:
    """Everything an exposure of one night depends on."""

    spec: SimulationSpec
    detector: Detector
    bias: np.ndarray  # ADU, this night's level included
    flats: dict[str, np.ndarray]
    stars: StarField
    full_well: float  # float32-exact, so 'at full well' comparisons are exact
    readout: Readout
    fringes: dict[str, np.ndarray] = field(default_factory=dict)  # unit-RMS pattern per filter


@dataclass
class Exposure:
    """Raw pixels and the per-frame truth maps (None where they do not apply)."""

    raw: np.ndarray
    cosmics: np.ndarray | None = None  # e- deposited by cosmic rays
    sky: np.ndarray | None = None  # e-, noiseless sky + stars before the flat
    saturated: np.ndarray | None = None  # uint8: 1 at full well, 2 received bleed charge


def _science_light(frame: SimFrame, model: NightModel, rng: np.random.Generator) -> np.ndarray:
    """Noiseless sky + stars (e-) as they arrive at the telescope, i.e. before the flat."""
    spec = model.spec
    sky = sky_rate(spec, frame.band) * rng.uniform(1 - SKY_SPREAD, 1 + SKY_SPREAD)
    fwhm = spec.fwhm * rng.uniform(1 - FWHM_SPREAD, 1 + FWHM_SPREAD)
    kind = "gaussian" if int(frame.name.rsplit("_", 1)[1]) % 2 else "moffat"
    beta = rng.uniform(2.5, 4.5)
    dy, dx = rng.normal(0.0, DITHER, 2)
    flux = model.stars.rates_in(spec, frame.band) * frame.exptime
    # a drift along x: the star at evenly spaced positions over the trail, its flux shared out
    steps = np.linspace(-spec.trail / 2, spec.trail / 2, int(np.ceil(2 * spec.trail)) + 1)
    light = np.zeros(spec.shape, np.float32)
    for step in steps:
        light += render_stars(spec.shape, model.stars.y + dy, model.stars.x + dx + step,
                              flux / steps.size, kind, fwhm, beta)
    light += np.float32(sky * frame.exptime)
    if spec.trail:
        frame.truth["trail"] = spec.trail
    frame.truth.update(sky_rate=round(sky, 4), fwhm=round(fwhm, 4), psf=kind,
                       moffat_beta=round(beta, 4) if kind == "moffat" else None,
                       dither_y=round(float(dy), 4), dither_x=round(float(dx), 4))
    return light


def _blank_sky_light(frame: SimFrame, model: NightModel, rng: np.random.Generator) -> np.ndarray:
    """Noiseless light (e-) of a night-sky frame: the sky and faint stars of a field seen once
    (every frame points elsewhere, so a median of a few keeps the sky and none of the stars)."""
    spec = model.spec
    sky = sky_rate(spec, frame.band) * rng.uniform(1 - SKY_SPREAD, 1 + SKY_SPREAD)
    (ny, nx), n = spec.shape, spec.n_stars
    y, x = rng.uniform(2, ny - 3, n), rng.uniform(2, nx - 3, n)
    flux = 10.0 ** rng.uniform(np.log10(30.0), np.log10(3000.0), n) * frame.exptime
    light = render_stars(spec.shape, y, x, flux, "gaussian", spec.fwhm, 0.0)
    light += np.float32(sky * frame.exptime)
    frame.truth.update(sky_rate=round(sky, 4), fwhm=spec.fwhm, psf="gaussian")
    return light


def expose(frame: SimFrame, model: NightModel) -> Exposure:
    """Simulate `frame`; fills `frame.truth` with the per-frame parameters drawn."""
    spec = model.spec
    rng = rng_for(spec.seed, frame.name)
    if frame.frame_type == "bias":
        raw = digitise(None, model.bias, frame.bias_offset, model.readout, rng)
        return Exposure(raw)

    expected = model.detector.dark_rate_at(spec, frame.temperature) * np.float32(frame.exptime)
    light = None
    if frame.frame_type == "flat":
        level = spec.flat_level * rng.uniform(1 - FLAT_LEVEL_SPREAD, 1 + FLAT_LEVEL_SPREAD)
        frame.truth["flat_level_e"] = round(level, 3)
        expected += model.flats[frame.band] * np.float32(level)
    elif frame.frame_type == "science":
        light = _science_light(frame, model, rng)
        expected += light * model.flats[frame.band]
    elif frame.frame_type == "sky":
        light = _blank_sky_light(frame, model, rng)
        expected += light * model.flats[frame.band]
    if light is not None and frame.band in model.fringes:
        # the fringe light follows the sky level and passes through the flat like the sky; it
        # is added noiselessly (its own photon noise is a per cent of the sky's)
        fringe_e = spec.fringe[frame.band] * frame.truth["sky_rate"] * frame.exptime
        frame.truth["fringe_rms_e"] = round(fringe_e, 4)
        expected += model.fringes[frame.band] * np.float32(fringe_e) * model.flats[frame.band]

    electrons = photon_counts(rng, expected)
    n_events = int(rng.poisson(expected_events(spec.cosmic_ray_rate, frame.exptime, spec.shape)))
    cosmics = cosmic_rays(spec.shape, n_events, rng, spec.cosmic_ray_energy)
    electrons += cosmics  # after the flat: cosmic rays never passed through the optics
    frame.truth["n_cosmic_rays"] = n_events
    bled = bleed(electrons, model.full_well)
    saturated = (electrons >= model.full_well).astype(np.uint8)
    saturated[bled] |= 2
    frame.truth["n_saturated_pixels"] = int((saturated & 1).sum())
    raw = digitise(electrons, model.bias, frame.bias_offset, model.readout, rng)
    return Exposure(raw, cosmics=cosmics, sky=light, saturated=saturated)

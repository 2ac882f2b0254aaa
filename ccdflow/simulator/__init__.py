"""Realistic simulated nights with known truth, to prove each reduction step correct to the noise.

    night = simulate_night(outdir, SimulationSpec(shape=(256, 256), seed=42))

writes `outdir/night<k>/raw/*.fits` (generic-instrument headers, uint16) and `outdir/truth/`
(bias structure, dark rate, flats, bad-pixel map, per-frame sky and cosmic-ray maps, truth.json).
"""

from ccdflow.simulator.night import SimulatedNight, simulate_night
from ccdflow.simulator.schedule import SimFrame
from ccdflow.simulator.spec import SimulationSpec

__all__ = ["SimFrame", "SimulatedNight", "SimulationSpec", "simulate_night"]

"""Realistic simulated nights with known truth, to prove each reduction step correct to the noise.

    night = simulate_night(outdir, SimulationSpec(shape=(256, 256), seed=42))

Layout written under `outdir`:

- `night<k>/raw/*.fits`: uint16 raw frames (data area + overscan on the right) with the generic
  instrument's keywords, named `n<k>_bias_001`, `n<k>_dark_120s_-20C_001`, `n<k>_flat_V_001`,
  `n<k>_sci_V_001`, and with `fringe`/`n_sky` night-sky frames `n<k>_sky_I_001` (IMAGETYP SKY).
- `truth/`: `bias.fits` (ADU, whole raw frame), `dark_rate.fits` (e-/s at the reference
  temperature), `flat_<filter>.fits` (median 1), `bpm.fits` (1 hot, 2 dead/low, 4 bad column),
  per exposed frame `cr_<name>.fits`, per science frame `sky_<name>.fits` (noiseless e- before
  the flat, without fringes) and `sat_<name>.fits` (1 at full well, 2 bleed), per filter with
  fringes `fringe_<filter>.fits` (RMS 1; each frame's `fringe_rms_e` in truth.json scales it),
  with `amp_glow` the amplifier glow `glow.fits` (e-/s), with `cosmic_ray_charge_truth` the
  deposited charge `crq_<name>.fits` (e-), and `truth.json` with every scalar (dark law,
  amplifier sections, gains and noises, non-linearity).
  With several amplifiers the data area starts after a prescan (see amplifiers.py); a spec the
  `generic` instrument cannot read needs `instrument.instrument_yaml(spec)`. docs/simulator.md
  lists every feature.
  Nights after the first keep their own bias and flats in `truth/night<k>/`.
"""

from ccdflow.simulator.night import SimulatedNight, simulate_night
from ccdflow.simulator.schedule import SimFrame
from ccdflow.simulator.spec import SimulationSpec

__all__ = ["SimFrame", "SimulatedNight", "SimulationSpec", "simulate_night"]

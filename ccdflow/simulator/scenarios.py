"""Named simulated nights that tests and benchmarks share, and `ccdflow night` run on one as a
user runs it (a subprocess: the simulator never imports the reduction)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from ccdflow.simulator.spec import SimulationSpec

#: Issue 14's night: a 6-column prescan, odd set points -15 C (+-0.1 C, which fixed round(T/2) bins split) and
#: -5.3 C, science 1.8 C warmer than the darks, faint sky (5 e-/s) so read noise and dark show
#: in the pulls, amplifier glow, gain 2.2 and read noise 7 e-, cosmic rays of 30-30000 e- (4x a
#: real rate, for numbers), 60 s and 300 s darks for 20 s and 120 s science frames.
SCIENCE_NIGHT = SimulationSpec(
    shape=(256, 256), prescan=6, overscan=32, n_bias=9, n_dark=5, dark_exptimes=(60.0, 300.0),
    dark_temperatures=(-15.0, -5.3), n_flat=7, filters=("V",), n_science=4,
    science_exptimes=(20.0, 120.0), science_temperature_offset=1.8, sky_rates={"V": 5.0},
    gain=2.2, read_noise=7.0, amp_glow=1.0, amp_glow_scale=20.0,
    cosmic_ray_energy=(30.0, 30000.0), cosmic_ray_rate=8.0, cosmic_ray_charge_truth=True,
    seed=14)


def run_night_cli(raw_dir: Path, outdir: Path, *options: str,
                  workers: int = 1) -> subprocess.CompletedProcess:
    """`ccdflow night RAW --out OUT` on a fresh SQLite caldb in OUT, with `options` added."""
    outdir.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "CCDFLOW_CALDB": f"sqlite:///{(outdir / 'caldb.sqlite').resolve()}"}
    return subprocess.run(
        [sys.executable, "-m", "ccdflow", "night", str(raw_dir), "--out", str(outdir),
         "--workers", str(workers), "--json", *options],
        capture_output=True, text=True, env=env, check=False)

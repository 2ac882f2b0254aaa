"""The scorecard measures what it says: a reduction that is right to the noise scores the
issue's targets, and each kind of wrong one misses its own figure.

The 'reductions' here are written by the test from the truth (products = truth + noise of a
known size, masters likewise, a BPM and cosmic-ray mask copied from the truth), so the figures
are known in advance and the scorecard alone is under test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.simulator import SimulatedNight, SimulationSpec, simulate_night
from ccdflow.simulator.scorecard import background_noise, scorecard

SPEC = SimulationSpec(shape=(96, 96), overscan=8, n_bias=3, n_dark=2, dark_exptimes=(120.0,),
                      dark_temperatures=(-15.0,), n_flat=2, filters=("V",), n_science=3,
                      science_exptimes=(20.0, 120.0), sky_rates={"V": 5.0}, amp_glow=1.0,
                      cosmic_ray_charge_truth=True, cosmic_ray_rate=200.0, seed=17)


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> SimulatedNight:
    return simulate_night(tmp_path_factory.mktemp("card"), SPEC)


def truth(night: SimulatedNight, name: str) -> np.ndarray:
    return fits.getdata(night.truth_dir / name).astype(np.float64)


def write(path: Path, sci: np.ndarray, unc: np.ndarray, mask: np.ndarray | None = None,
          **cards) -> str:
    hdus = [fits.PrimaryHDU(header=fits.Header(cards)),
            fits.ImageHDU(sci.astype(np.float32), name="SCI"),
            fits.ImageHDU(unc.astype(np.float32), name="UNCERT")]
    hdus[1].header["BUNIT"] = "electron"
    if mask is not None:
        hdus.append(fits.ImageHDU(mask.astype(np.uint8), name="MASK"))
    fits.HDUList(hdus).writeto(path, overwrite=True)
    return str(path)


def fake_reduction(night: SimulatedNight, out: Path, *, uncert_scale: float = 1.0,
                   offset_e: float = 0.0, flag_glow: bool = False, blind_cr: bool = False) -> Path:
    """Products and masters as a reduction right to the noise would write them, but for the
    one fault asked for."""
    rng = np.random.default_rng(3)
    out.mkdir(parents=True, exist_ok=True)
    flat = truth(night, "flat_V.fits")
    bpm = truth(night, "bpm.fits").astype(np.uint8)
    science = []
    for frame in night.select("science"):
        sky = truth(night, f"sky_{frame.name}.fits")
        sigma = background_noise(night, frame) / flat  # e-, after the flat
        sci = sky + offset_e + rng.normal(size=sky.shape) * sigma
        cr = truth(night, f"cr_{frame.name}.fits") > 0
        mask = (bpm != 0) | (cr if not blind_cr else np.zeros_like(cr))
        path = write(out / f"{frame.name}.fits", sci, sigma * uncert_scale, mask)
        science.append({"raw": str(frame.path), "path": path, "status": "reduced"})
    masters = []
    bias = truth(night, "bias.fits")
    expected_bias = bias[:, :96] - bias[:, 96:].mean(axis=1)[:, None]
    s = np.full(expected_bias.shape, 1.2)
    masters.append({"type": "bias", "status": "built", "inputs": [],
                    "path": write(out / "bias.fits", expected_bias + rng.normal(size=s.shape) * s, s)})
    darks = night.select("dark")
    factor = np.mean([SPEC.dark_factor(f.temperature) for f in darks])
    dark = truth(night, "dark_rate.fits") * factor * 120.0 / night.gain
    masters.append({"type": "dark", "status": "built", "inputs": [str(f.path) for f in darks],
                    "path": write(out / "dark.fits", dark + rng.normal(size=s.shape) * s, s,
                                  EXPTIME=120.0)})
    s = np.full(flat.shape, 0.004) * 3000.0
    masters.append({"type": "flat", "status": "built", "inputs": [],
                    "path": write(out / "flat.fits", flat * 3000.0 + rng.normal(size=s.shape) * s, s,
                                  CF_FILT="V")})
    flags = bpm.copy()
    if flag_glow:
        flags[truth(night, "glow.fits") > 0.2] = 1
    path = out / "bpm.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(flags, name="SCI")]).writeto(path)
    masters.append({"type": "bpm", "status": "built", "inputs": [], "path": str(path)})
    (out / "report.json").write_text(json.dumps({"science": science, "masters": masters}))
    return out


def test_a_reduction_right_to_the_noise_scores_the_targets(night, tmp_path):
    card = scorecard(night, fake_reduction(night, tmp_path))
    for t in ("20s", "120s"):
        s = card["science"][t]
        assert s["pull_std"] == pytest.approx(1.0, abs=0.015)
        assert abs(s["mean_residual_se"]) <= 3.0
        assert s["row_scatter_ratio"] == pytest.approx(1.0, abs=0.15)
    for kind in ("bias", "dark", "flat"):
        assert card["masters"]["residual_over_error"][kind] == pytest.approx(1.0, abs=0.03)
    assert card["masters"]["dark_masters_per_group"] == {"120s -15C": 1}
    bpm = card["bpm"]
    assert (bpm["false_flag_fraction"], bpm["hot_recall"], bpm["dead_recall"]) == (0.0, 1.0, 1.0)
    assert card["cosmic_rays"]["recall"] == 1.0 and card["cosmic_rays"]["hits"] > 100


def test_each_fault_misses_its_own_figure(night, tmp_path):
    wide = scorecard(night, fake_reduction(night, tmp_path / "a", uncert_scale=1.1))
    assert all(s["pull_std"] < 0.93 for s in wide["science"].values())
    offset = scorecard(night, fake_reduction(night, tmp_path / "b", offset_e=1.0))
    assert all(s["mean_residual_se"] > 3.0 for s in offset["science"].values())
    glow = scorecard(night, fake_reduction(night, tmp_path / "c", flag_glow=True))
    assert glow["bpm"]["false_flag_fraction"] > 0.003 and glow["bpm"]["false_in_glow"] > 0
    blind = scorecard(night, fake_reduction(night, tmp_path / "d", blind_cr=True))
    assert blind["cosmic_rays"]["recall"] < 0.5

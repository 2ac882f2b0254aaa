"""Source-mask step: photutils segmentation covers the simulator's stars, leaves the sky alone,
ORs into the mask only when asked, and has its own status keyword."""

from __future__ import annotations

import numpy as np
from astropy.io import fits
from astropy.nddata import CCDData

from ccdflow.plugins.steps.source_mask import SourceMasker, source_mask
from ccdflow.testing import run_step


def test_pure_sky_has_no_source_and_a_blob_is_found():
    rng = np.random.default_rng(0)
    sky = rng.normal(100.0, 5.0, (64, 64)).astype(np.float32)
    found, n = source_mask(sky, nsigma=5.0)
    assert n == 0 and not found.any()
    yy, xx = np.mgrid[:64, :64]
    sky += 400.0 * np.exp(-((yy - 30) ** 2 + (xx - 20) ** 2) / 8.0).astype(np.float32)
    found, n = source_mask(sky, nsigma=5.0, dilate=0)
    grown, _ = source_mask(sky, nsigma=5.0, dilate=3)
    assert n == 1 and found[30, 20] and grown.sum() > found.sum()


def test_status_keyword_and_apply_to_mask():
    assert SourceMasker.status_keyword() == "CF_SRCMK"
    rng = np.random.default_rng(1)
    data = rng.normal(100.0, 5.0, (48, 48)).astype(np.float32)
    data[20:23, 20:23] += 500.0
    kept = run_step("source_mask", CCDData(data, unit="adu"), params={"apply_to_mask": False})
    assert kept.mask is None and kept.source_mask[21, 21]
    applied = run_step("source_mask", CCDData(data, unit="adu"))
    assert applied.mask[21, 21] and applied.header["CF_NSRC"] == 1
    assert applied.header["CF_SRCPX"] == int(applied.source_mask.sum())


def test_covers_simulated_stars(tmp_path):
    from ccdflow.simulator import SimulationSpec, simulate_night

    spec = SimulationSpec(shape=(128, 128), overscan=0, n_bias=0, n_dark=0, n_flat=0, filters=("V",),
                          n_science=1, n_stars=60, n_saturated_stars=0, cosmic_ray_rate=0.0,
                          hot_pixel_fraction=0.0, dead_pixel_fraction=0.0, vignetting=0.0, seed=21)
    night = simulate_night(tmp_path, spec)
    (raw,) = sorted(night.raw_dir.glob("*sci*.fits"))
    sky = fits.getdata(night.truth_dir / f"sky_{raw.stem}.fits")
    level, noise = np.median(sky), np.sqrt(np.median(sky) + spec.read_noise**2)
    bright = sky > level + 10 * noise  # star pixels 10 sigma above the sky
    background = sky < level + 0.1 * noise
    assert bright.sum() > 30
    out = run_step("source_mask", CCDData(fits.getdata(raw).astype(np.float32), unit="adu"),
                   params={"box_size": 32})
    assert out.mask[bright].mean() > 0.98
    assert out.mask[background].mean() < 0.05

"""Stacking reduced exposures: rejection finds the simulator's injected cosmic rays, masks are
written as new files, inputs stay untouched, and bad stacks are refused."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from ccdflow.cli import cli
from ccdflow.framework.builders.stack import cr_mask_path, stack_products
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.errors import UnprocessableInputError
from ccdflow.framework.engine.recipe import run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitsio import read_ccd, sha256_file
from ccdflow.framework.io.fitswrite import write_ccd
from ccdflow.simulator import SimulationSpec, simulate_night

SKIP = ["saturation", "linearity", "bias", "dark", "flat", "bpm", "cosmicray"]


@pytest.fixture(scope="module")
def products(tmp_path_factory):
    """Seven blank-sky exposures (no stars, no dither to undo), overscan-corrected and trimmed,
    in electrons with an uncertainty plane; many cosmic rays each."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    spec = SimulationSpec(shape=(96, 96), n_bias=0, n_dark=0, n_flat=0, filters=("V",), n_science=7,
                          n_stars=0, n_saturated_stars=0, science_exptime=10.0, sky_rates={"V": 20.0},
                          cosmic_ray_rate=300.0, seed=11)
    tmp = tmp_path_factory.mktemp("stack")
    night = simulate_night(tmp / "sim", spec)
    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic", params=[f"{s}.skip=true" for s in SKIP])
    metas, _ = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    paths = []
    for meta in metas:
        ccd = run_recipe(manager, read_ccd(meta.path), config, StepContext(meta, config.instrument), {})
        ccd.data *= np.float32(night.gain)  # the gain step, by hand: noise model in electrons
        path = tmp / "reduced" / Path(meta.path).name
        write_ccd(ccd, path)
        paths.append(path)
    return night, paths


def test_stack_rejection_recovers_injected_cosmic_rays(products):
    night, paths = products
    stacked = stack_products(paths, method="median", clip="sigma", sigma_low=10, sigma_high=8,
                             keep_rejected=True)
    sky_noise = np.sqrt(20.0 * 10.0 + night.read_noise_e**2)
    found = total = false = clean = 0
    for path, rejected in zip(paths, stacked.rejected, strict=True):
        deposit = fits.getdata(night.truth_dir / f"cr_{Path(path).stem}.fits") > 0
        # the charge itself is not in cr_*.fits; every hit pixel gets >= 500 e-, i.e. >= 30 sigma
        assert 20 * sky_noise < 500
        found += np.count_nonzero(rejected & deposit)
        total += np.count_nonzero(deposit)
        false += np.count_nonzero(rejected & ~deposit)
        clean += np.count_nonzero(~deposit)
    assert total > 100
    assert found / total >= 0.90, found / total
    # False flags come from the engine's per-pixel spread: a MAD of 7 values is sometimes a
    # third of the true noise (measured 0.33 % of clean pixels at 8 sigma).
    assert false / clean < 0.005, false / clean
    assert stacked.ccd.header["NCOMBINE"] == 7 and stacked.ccd.header["CF_S0001"] == sha256_file(paths[0])
    # the stack itself is clean: no pixel carries cosmic-ray charge
    assert np.max(stacked.ccd.data) < np.median(stacked.ccd.data) + 10 * sky_noise


def test_stack_cli_writes_cr_masks_next_to_inputs_and_leaves_inputs_alone(products, tmp_path):
    night, paths = products
    before = [sha256_file(p) for p in paths]
    out = tmp_path / "stack.fits"
    result = CliRunner().invoke(cli, ["stack", *map(str, paths), "--out", str(out), "--cr-masks",
                                      "--cr-dir", str(tmp_path / "cr"), "--sigma-high", "5", "--json"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert [sha256_file(p) for p in paths] == before
    entry = summary["inputs"][0]
    mask_path = Path(entry["cr_mask"])
    assert mask_path == cr_mask_path(paths[0], tmp_path / "cr")
    with fits.open(mask_path) as hdul:
        assert hdul[0].header["CF_INPS"] == before[0] and hdul[0].header["CF_STKF"] == "stack.fits"
        assert hdul["CRMASK"].data.sum() == entry["rejected_pixels"] > 0
    with fits.open(out) as hdul:
        assert {"SCI", "UNCERT"} <= {h.name for h in hdul} and hdul[0].header["CF_CLIP"] == "sigma"


def test_refusals(products, tmp_path):
    _, paths = products
    with pytest.raises(UnprocessableInputError, match="at least 3 frames"):
        stack_products(paths[:2])
    small = tmp_path / "small.fits"
    ccd = read_ccd(paths[0], hdu="SCI")
    write_ccd(ccd[:50, :60], small)
    with pytest.raises(UnprocessableInputError, match="do not share a pixel grid: 96x96 in .*50x60 in"):
        stack_products([*paths[:3], small])
    result = CliRunner().invoke(cli, ["stack", *map(str, [*paths[:3], small]), "--out",
                                      str(tmp_path / "s.fits")])
    assert result.exit_code == 3 and "pixel grid" in result.output


def test_frames_of_different_filters_are_refused_unless_asked(products, tmp_path):
    """The reduction writes the filter the header map read (CF_FILT, whatever the camera's
    keyword); R and V frames of one field are not stacked by accident."""
    _, paths = products
    copies = []
    for i, path in enumerate(paths[:4]):
        with fits.open(path) as hdul:
            hdul[0].header["CF_FILT"] = "R" if i == 3 else "V"
            copies.append(tmp_path / f"f{i}.fits")
            hdul.writeto(copies[-1])
    with pytest.raises(UnprocessableInputError, match=r"different filters \(R: 1 \(f3.fits\); V: 3 "
                                                      r"\(f0.fits, \.\.\.\)\); stack one filter"):
        stack_products(copies)
    result = CliRunner().invoke(cli, ["stack", *map(str, copies), "--out", str(tmp_path / "s.fits")])
    assert result.exit_code == 3 and "--mix-filters" in result.output
    assert not (tmp_path / "s.fits").exists()
    result = CliRunner().invoke(cli, ["stack", *map(str, copies), "--out", str(tmp_path / "s.fits"),
                                      "--mix-filters"])
    assert result.exit_code == 0, result.output
    assert stack_products(copies[:3]).ccd.shape == (96, 96)  # one filter: stacked


def test_the_reduction_records_the_filter_it_read(tmp_path):
    """A night's product carries CF_FILT from the header map (here the simulator's FILTER)."""
    from ccdflow.testing.night import reduce_simulated_night, simulated_spec

    run = reduce_simulated_night(tmp_path, simulated_spec(filters=("R",)), instrument="generic",
                                 params=(), report=False)
    assert run.products and all(fits.getheader(p)["CF_FILT"] == "R" for p in run.products)

"""Masters and reduced frames against the simulator's truth: residuals within the noise."""

from __future__ import annotations

import json

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.config import build
from ccdflow.framework.fitsio import sha256_file
from ccdflow.framework.masters import build_master
from ccdflow.framework.reduction import group_frames
from ccdflow.framework.scan import scan_paths
from ccdflow.simulator import SimulationSpec, simulate_night

NX, NY, OSCAN = 160, 128, 24


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    spec = SimulationSpec(shape=(NY, NX), overscan=OSCAN, n_bias=9, n_dark=5,
                          dark_exptimes=(300.0,), dark_temperatures=(-20.0, -14.0), n_flat=7,
                          filters=("V",), n_science=2, seed=5)
    return simulate_night(tmp_path_factory.mktemp("sim"), spec)


@pytest.fixture(scope="module")
def setup(night):
    from ccdflow.framework.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    frames, rejected = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    assert not rejected
    groups = {}
    for metas in group_frames(frames).values():
        groups.setdefault(metas[0].frame_type, []).append(metas)
    return manager, config, groups


def truth(night, name):
    return fits.getdata(night.truth_dir / name).astype(np.float64)


def expected_bias(night):
    """Truth bias structure after per-row overscan subtraction and trimming."""
    bias = truth(night, "bias.fits")
    return bias[:, :NX] - np.median(bias[:, NX:], axis=1)[:, None]


def test_master_bias_matches_truth_to_the_noise(night, setup):
    manager, config, groups = setup
    (metas,) = groups["bias"]
    master = build_master("bias", metas, manager, config, method="mean", clip="sigma")
    resid = master.data - expected_bias(night)
    n = len(metas)
    expected_noise = night.read_noise_adu / np.sqrt(n)
    assert abs(np.mean(resid)) < 0.2 * night.read_noise_adu  # overscan tracks the level offset
    assert np.std(resid) == pytest.approx(expected_noise, rel=0.15)
    assert master.header["NCOMBINE"] == n and master.header["CF_MTYPE"] == "bias"
    assert master.header["CF_S0001"] == sha256_file(metas[0].path)


def test_master_dark_rate_matches_truth_at_both_temperatures(night, setup):
    manager, config, groups = setup
    (bias_metas,) = groups["bias"]
    bias = build_master("bias", bias_metas, manager, config)
    truth_rate = truth(night, "dark_rate.fits")
    bpm = truth(night, "bpm.fits").astype(int)
    rates = {}
    for metas in groups["dark"]:
        master = build_master("dark", metas, manager, config, {"bias": bias})
        temp = metas[0].temperature
        rate_e = master.data * night.gain / master.header["EXPTIME"]
        model = truth_rate * 2.0 ** ((temp - night.ref_temperature) / night.doubling_temperature)
        good = bpm == 0
        assert np.median(rate_e[good]) == pytest.approx(np.median(model[good]), rel=0.10)
        hot = (bpm & 1) > 0
        if hot.any():
            assert np.median(rate_e[hot] / model[hot]) == pytest.approx(1.0, rel=0.15)
        rates[round(temp)] = np.median(rate_e[good])
        assert master.header["CF_DKRT"] > 0 and abs(master.header["CF_TEMP"] - temp) < 0.5
    (t_cold, r_cold), (t_warm, r_warm) = sorted(rates.items())
    assert r_warm / r_cold == pytest.approx(2 ** ((t_warm - t_cold) / night.doubling_temperature),
                                            rel=0.15)


def test_master_flat_matches_truth_shape(night, setup):
    manager, config, groups = setup
    (bias_metas,) = groups["bias"]
    bias = build_master("bias", bias_metas, manager, config)
    (flat_metas,) = groups["flat"]
    dark_metas = min(groups["dark"], key=lambda g: abs(g[0].temperature - flat_metas[0].temperature))
    dark = build_master("dark", dark_metas, manager, config, {"bias": bias})
    master = build_master("flat", flat_metas, manager, config, {"bias": bias, "dark": dark},
                          method="mean", clip="sigma")
    truth_flat = truth(night, "flat_V.fits")
    good = truth(night, "bpm.fits") == 0
    ratio = (master.data / truth_flat)[good]
    assert np.median(master.data) == pytest.approx(1.0, abs=1e-6)
    assert np.median(ratio) == pytest.approx(1.0, abs=0.01)
    # per-pixel scatter: Poisson of ~N x level electrons (plus read noise), within 25 %
    raws = [fits.getdata(m.path).astype(float) for m in flat_metas]
    level_e = np.median([np.median(r[:, :NX]) - np.median(r[:, NX:]) for r in raws]) * night.gain
    assert np.std(ratio) == pytest.approx(1 / np.sqrt(level_e * len(flat_metas)), rel=0.25)


def test_demo_reduces_science_to_the_noise(tmp_path):
    from click.testing import CliRunner

    from ccdflow.cli import _add_commands, cli

    if "demo" not in cli.commands:
        _add_commands()
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--json", "--size", "160",
                                      "--n-flat", "5", "--seed", "3"])
    assert result.exit_code == 0, result.output
    summary = json.loads(result.output)
    assert summary["reduced"] and not summary["rejected"]
    for frame in summary["reduced"]:
        # the median of a flat normalised on a small frame is itself uncertain by ~1e-4
        assert abs(frame["residual_median_e"]) < 0.1 * frame["expected_noise_e"]
        assert frame["residual_over_noise_std"] == pytest.approx(1.0, rel=0.1)
        with fits.open(frame["path"]) as hdul:
            assert [h.name for h in hdul][:4] == ["PRIMARY", "SCI", "UNCERT", "MASK"] or \
                [h.name for h in hdul][:2] == ["PRIMARY", "SCI"]
            header = hdul[0].header
            for key in ("CF_RAW", "CF_RAWS", "CF_BIASF", "CF_BIASS", "CF_DARKF", "CF_FLATF",
                        "CF_VERS", "CF_CHASH"):
                assert key in header, key
            assert header["CF_FLAT"] == "DONE"

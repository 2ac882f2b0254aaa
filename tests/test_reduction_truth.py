"""Masters and reduced frames against the simulator's truth: residuals within the noise."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from scipy import ndimage

from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import MasterRef, group_frames, reduce_frame
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.instrument_files import manager_with_files
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitsio import sha256_file
from ccdflow.framework.io.fitswrite import write_ccd
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
    from ccdflow.framework.engine.plugins import get_plugin_manager

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


# -- the whole science chain with uncertainty: residual against truth in units of its error --------

FULL_RECIPES = """extends: generic
name: simtruth
recipes:
  bias: [overscan, trim]
  dark: [overscan, trim, bias]
  flat: [overscan, trim, bias, dark]
  science: [overscan, trim, uncertainty, bias, dark, flat, gain]
"""


def robust_width(z: np.ndarray) -> float:
    """MAD-based standard deviation: insensitive to the few pixels truth cannot describe."""
    z = z[np.isfinite(z)]
    return float(1.4826 * np.median(np.abs(z - np.median(z))))


@pytest.fixture(scope="module")
def reduced(night, setup, tmp_path_factory):
    """Both science frames reduced with an uncertainty plane created right after trim.

    Created there, the Poisson term sees dark current plus flat-fielded light (the charge
    actually collected); bias and dark subtraction then add the masters' variances and the
    flat adds its relative error, as ccdproc propagates them.
    """
    manager, _, groups = setup
    out = tmp_path_factory.mktemp("reduced")
    (out / "simtruth.yaml").write_text(FULL_RECIPES)
    config = build(manager_with_files([out / "simtruth.yaml"]))
    (bias_metas,) = groups["bias"]
    cold = min(groups["dark"], key=lambda g: g[0].temperature)
    (flat_metas,) = groups["flat"]
    bias = build_master("bias", bias_metas, manager, config)
    dark = build_master("dark", cold, manager, config, {"bias": bias})
    flat = build_master("flat", flat_metas, manager, config, {"bias": bias, "dark": dark})
    masters = {}
    for kind, ccd in (("bias", bias), ("dark", dark), ("flat", flat)):
        write_ccd(ccd, out / f"{kind}.fits")
        masters[kind] = MasterRef.load(kind, out / f"{kind}.fits")
    frames = []
    for meta in groups["science"][0]:
        assert abs(meta.temperature - cold[0].temperature) < 0.5  # no temperature scaling here
        ccd, _ = reduce_frame(meta, manager, config, masters, out / f"red_{Path(meta.path).name}")
        frames.append((meta, ccd))
    return frames, masters


def clean_pixels(night, stem: str, mask) -> np.ndarray:
    """Pixels truth describes: not masked, not saturated or bled, not hit, not bad, 2 px away."""
    bad = np.zeros(truth(night, "bpm.fits").shape, bool) if mask is None else np.asarray(mask, bool)
    for name in (f"cr_{stem}.fits", f"sat_{stem}.fits", "bpm.fits"):
        bad |= truth(night, name) != 0
    return ~ndimage.binary_dilation(bad, iterations=2)


def test_reduced_frames_are_electrons_with_uncertainty(reduced):
    frames, _ = reduced
    for _, ccd in frames:
        assert str(ccd.unit) == "electron" and ccd.uncertainty is not None
        for key in ("CF_UNCER", "CF_BIAS", "CF_DARK", "CF_FLAT", "CF_GAIN"):
            assert ccd.header[key] == "DONE", key


def test_pull_distribution_has_unit_width(night, reduced):
    """(reduced - truth) / uncertainty: robust width within 5 % of 1 on every frame.

    Measured 1.01-1.02: the master flat's error is estimated from the scatter of 7 frames,
    so it is itself noisy, and dividing by a noisy variance widens the pull (Jensen).
    """
    frames, _ = reduced
    for meta, ccd in frames:
        stem = Path(meta.path).stem
        good = clean_pixels(night, stem, ccd.mask)
        assert good.mean() > 0.7
        pull = (ccd.data - truth(night, f"sky_{stem}.fits")) / ccd.uncertainty.array
        assert robust_width(pull[good]) == pytest.approx(1.0, abs=0.05), stem
        # the tails are Gaussian too: no population of pixels with a forgotten variance term
        assert np.mean(np.abs(pull[good]) > 4) < 5e-4, stem


def test_residual_mean_is_zero_within_its_error(night, reduced):
    """The additive residual (bias, overscan, dark scaling) is consistent with zero.

    The master flat is normalised to its own median, which noise shifts by ~5e-5 relative to
    the truth's median (pixels near the median swap ranks); that common scale is measured
    against truth and removed before asking for zero, and it must itself stay below 2e-4.
    """
    frames, masters = reduced
    truth_flat = truth(night, "flat_V.fits")
    for meta, ccd in frames:
        stem = Path(meta.path).stem
        good = clean_pixels(night, stem, ccd.mask)
        scale = float(np.median((masters["flat"].ccd.data / truth_flat)[good]))
        assert abs(scale - 1) < 2e-4
        sky = truth(night, f"sky_{stem}.fits")
        resid = (ccd.data * scale - sky)[good]
        sem = np.sqrt(np.sum(ccd.uncertainty.array[good].astype(float) ** 2)) / resid.size
        assert abs(resid.mean()) < 3.5 * sem, (stem, resid.mean(), sem)


def rms_ratio(resid: np.ndarray, error: np.ndarray) -> float:
    """Scatter of the residual over the RMS of its predicted error (1 when the plane is right).

    A per-pixel ratio would follow Student's t (each pixel's error comes from a few frames);
    comparing variances over the frame tests the error model itself.
    """
    return float(np.std(resid) / np.sqrt(np.mean(np.square(error, dtype=np.float64))))


def test_master_uncertainty_planes_predict_their_errors(night, reduced):
    """Master - truth against each master's uncertainty plane (median of a one-pass clip).

    Measured 1.00-1.02 (bias 1.020, dark 1.003, flat 1.002): the plane of a clipped combine is
    scaled for the good values the clip drops (``gaussian_error_scale``, docs/combine.md);
    before that scale it measured 1.03-1.09.
    The master dark's inputs share one master bias, whose error is common to them all and so
    not in their scatter: the builder adds it to the dark's plane (ccdproc's combine omits it;
    issue 14 item 3).
    """
    _, masters = reduced
    good = ndimage.binary_dilation(truth(night, "bpm.fits") != 0, iterations=1) == 0
    bias, dark, flat = (masters[k].ccd for k in ("bias", "dark", "flat"))
    resid = (bias.data - expected_bias(night))[good]
    assert 0.96 < rms_ratio(resid, bias.uncertainty.array[good]) < 1.06
    temp = dark.header["CF_TEMP"]
    rate = truth(night, "dark_rate.fits") * 2.0 ** ((temp - night.ref_temperature)
                                                     / night.doubling_temperature)
    resid = (dark.data - rate * dark.header["EXPTIME"] / night.gain)[good]
    assert 0.96 < rms_ratio(resid, dark.uncertainty.array[good]) < 1.06
    truth_flat = truth(night, "flat_V.fits")
    scale = np.median((flat.data / truth_flat)[good])
    resid = (flat.data - scale * truth_flat)[good]
    assert 0.96 < rms_ratio(resid, flat.uncertainty.array[good]) < 1.06


def test_clipped_mean_master_bias_error_plane_predicts_its_scatter(night, setup):
    """A clipped mean of 9 frames: the clip drops good values, and the error plane accounts for it
    (measured 1.024)."""
    manager, config, groups = setup
    (metas,) = groups["bias"]
    master = build_master("bias", metas, manager, config, method="mean", clip="sigma")
    resid = master.data - expected_bias(night)
    assert 0.96 < rms_ratio(resid, master.uncertainty.array) < 1.06

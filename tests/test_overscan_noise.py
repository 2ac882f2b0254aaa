"""The overscan correction's own noise in UNCERT (issue 14 item 6): the level subtracted per line
is an estimate from N overscan pixels, so every pixel of the line inherits its variance, and
row-averaged residuals scatter as UNCERT (with the row-correlated CF_ON<amp> term) predicts.
Before the term was added they scattered 1.9-3.6x more than UNCERT predicted."""

from __future__ import annotations

import math

import numpy as np
import pytest
from astropy.nddata import CCDData

from ccdflow.framework.builders.masters import build_master
from ccdflow.framework.builders.reduction import group_frames
from ccdflow.framework.engine.config import build
from ccdflow.framework.engine.instrument import RecipeEntry
from ccdflow.framework.engine.recipe import run_recipe
from ccdflow.framework.engine.step import StepContext
from ccdflow.framework.headers.scan import scan_paths
from ccdflow.framework.io.fitsio import read_ccd
from ccdflow.plugins.steps.overscan import overscan_model
from ccdflow.plugins.steps.overscan_noise import level_variance, median_factor, strip_noise
from ccdflow.simulator import SimulationSpec, simulate_night


def test_median_factor_is_the_median_efficiency():
    # exact values for Gaussian samples: 3 -> 1.3463, 5 -> 1.4355; pi/2 for many; <= 2: a mean
    assert median_factor(1) == median_factor(2) == 1.0
    assert median_factor(3) == pytest.approx(1.3463, rel=0.01)
    assert median_factor(5) == pytest.approx(1.4355, rel=0.01)
    assert median_factor(10_000) == pytest.approx(math.pi / 2)


def test_strip_noise_ignores_row_and_column_patterns():
    rng = np.random.default_rng(1)
    rows = np.linspace(0, 300, 2000) + rng.normal(0, 50, 2000)  # a gradient and row-to-row jumps
    strip = rng.normal(0, 4.0, (2000, 6)) + rows[:, None]
    strip += rng.normal(0, 30, 6)[None, :]  # fixed column pattern
    assert strip_noise(strip) == pytest.approx(4.0, rel=0.03)


@pytest.mark.parametrize("method", ["line_median", "poly", "median", "mean"])
def test_level_variance_matches_the_scatter_of_the_level(method):
    """The variance predicted for the subtracted level against the level's actual scatter over
    many strips of 6 overscan columns and 200 lines (per line, averaged over the lines)."""
    rng = np.random.default_rng(2)
    sigma, lines, width = 3.0, 200, 6
    trials = 600 if method in ("line_median", "poly") else 4000  # one level per strip: more strips
    strips = [rng.normal(0, sigma, (lines, width)).astype(np.float32) for _ in range(trials)]
    levels = np.array([overscan_model(strip, method) for strip in strips], np.float64)
    # each strip's own prediction (its noise measured from its 1200 pixels), averaged
    predicted = np.mean([level_variance(strip, method) for strip in strips[:100]], axis=0)
    actual = levels.var(axis=0) if levels.ndim == 2 else levels.var()
    assert np.mean(actual) == pytest.approx(np.mean(predicted), rel=0.06)
    if method == "line_median":
        assert np.mean(predicted) == pytest.approx(sigma**2 * median_factor(6) / 6, rel=0.05)
    if method == "poly":  # the leverage: high at the ends, (order + 1) / lines on average
        assert np.mean(predicted) / (sigma**2 * median_factor(6) / 6) == pytest.approx(4 / lines, rel=0.1)
        ends = slice(0, 10)
        assert np.mean(actual[ends]) == pytest.approx(np.mean(predicted[ends]), rel=0.15)


NY, NX, OSCAN = 1024, 128, 6  # a 6-column prescan, as in the independent simulator


@pytest.fixture(scope="module")
def night(tmp_path_factory):
    spec = SimulationSpec(shape=(NY, NX), overscan=OSCAN, n_bias=16, n_dark=0, n_flat=0, filters=("V",),
                          n_science=0, seed=8)
    return simulate_night(tmp_path_factory.mktemp("oscan"), spec)


@pytest.mark.parametrize("method", ["line_median", "poly"])
def test_row_averaged_residuals_scatter_as_uncert_predicts(night, method):
    """Bias frames reduced like science frames (overscan, trim, uncertainty, bias) against a
    master bias of the other 12: their truth is 0. Each row's mean residual scatters as
    predicted by UNCERT, whose overscan term CF_ON<amp> is common to the row:
    var(row mean) = mean(UNCERT^2 - CF_ON) / width + CF_ON, with the frame's and the master's
    CF_ON. The per-pixel RMS matches UNCERT."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic", params=[f"overscan.method={method}"])
    recipe = [RecipeEntry(step=s) for s in ("overscan", "trim", "uncertainty", "bias")]
    config.instrument = config.instrument.model_copy(
        update={"recipes": {**config.instrument.recipes, "science": recipe}})
    frames, _ = scan_paths(sorted(night.raw_dir.glob("*.fits")), manager)
    (biases,) = group_frames(frames).values()
    master = build_master("bias", biases[4:], manager, config, method="mean", clip="sigma")
    rows, naive, predicted, pixels, planes = [], [], [], [], []
    for meta in biases[:4]:
        as_science = meta.model_copy(update={"frame_type": "science"})
        ccd = run_recipe(manager, read_ccd(meta.file), config, StepContext(as_science, config.instrument),
                         {"bias": master})
        (os_var,) = [float(v) for k, v in ccd.header.items() if k.startswith("CF_ON")]
        u2 = np.asarray(ccd.uncertainty.array, np.float64) ** 2
        rows.append(ccd.data.mean(axis=1))
        # the master bias's rows carry its inputs' overscan noise too (CF_ON<amp> / 12)
        (master_os,) = [float(v) for k, v in master.header.items() if k.startswith("CF_ON")]
        predicted.append(np.mean(u2 - os_var - master_os) / NX + os_var + master_os)
        naive.append(np.mean(u2 - os_var) / NX)  # as before: no overscan term, pixels independent
        pixels.append(ccd.data.ravel())
        # UNCERT without its Poisson term, which ccdproc's model takes from a bias frame's own
        # noise and structure (max(g x, 0): +8 % variance on pure read noise), to test the rest
        rn_adu, gain = ccd.header["CF_URN"] / ccd.header["CF_UGAIN"], ccd.header["CF_UGAIN"]
        master_u2 = np.asarray(master.uncertainty.array, np.float64) ** 2
        planes.append((os_var + rn_adu**2 + master_u2).ravel())
        if method == "line_median":  # one variance for every line (poly's: the lines' mean)
            # UNCERT holds exactly the overscan term + read noise + Poisson (of the data the
            # uncertainty step saw, before the bias step) + the master bias's error
            before_bias = np.asarray(ccd.data, np.float64) + master.data
            expected = os_var + rn_adu**2 + np.maximum(gain * before_bias, 0) / gain**2 + master_u2
            assert np.allclose(u2, expected, rtol=2e-3)
    observed = float(np.std(np.concatenate(rows)))
    ratio = observed / math.sqrt(np.mean(predicted))
    without = observed / math.sqrt(np.mean(naive))
    print(method, "row ratio", round(ratio, 3), "without the term", round(without, 2))
    assert ratio == pytest.approx(1.0, abs=0.1)
    pixel_ratio = float(np.std(np.concatenate(pixels)) / np.sqrt(np.mean(np.concatenate(planes))))
    print(method, "pixel ratio", round(pixel_ratio, 4))
    assert pixel_ratio == pytest.approx(1.0, abs=0.02)


def test_a_master_input_gets_no_modelled_overscan_term(night):
    """A master's inputs have no uncertainty step: their noise is measured by the combine's
    scatter (which holds the overscan term); a modelled term would count it twice."""
    from ccdflow.framework.engine.plugins import get_plugin_manager

    manager = get_plugin_manager(reload=True)
    config = build(manager, instrument="generic")
    frames, _ = scan_paths(sorted(night.raw_dir.glob("*.fits"))[:1], manager)
    ccd = run_recipe(manager, read_ccd(frames[0].file), config, StepContext(frames[0], config.instrument), {})
    assert isinstance(ccd, CCDData) and ccd.uncertainty is None
    assert any(k.startswith("CF_ON") for k in ccd.header)  # still recorded

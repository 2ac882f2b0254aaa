"""A calibration type added by a plugin, end to end: the example plugin's fringe frame.

The simulator writes a small night on example-cam's detector (1024 x 1024 pixels plus overscan,
so example-cam's own YAML reads it unchanged) in V and in the red filter I, where the science
frames and five night-sky frames carry fringes of a known pattern (RMS 2 % of the sky). A fresh
``ccdflow night`` process finds the example plugin through its entry point (a dist-info on
PYTHONPATH, as pip leaves it: test_example_plugin.py's ``plugin_env``), and nothing in ccdflow
names the fringe type: the night has to build the fringe master from the sky frames, register
it, choose it with ``best()`` and let the example's ``fringe`` step subtract it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

from ccdflow.framework.io import cards
from ccdflow.framework.io.fitsio import read_product
from ccdflow.simulator import SimulationSpec, simulate_night
from tests import test_example_plugin as example_tests

# the example plugin's fixtures: as installed for a subprocess, and imported in this one
plugin_env, example, example_manager = (example_tests.plugin_env, example_tests.example,
                                        example_tests.example_manager)

STRENGTH = 0.02  # fringe RMS / sky level in I
SPEC = SimulationSpec(shape=(1024, 1024), overscan=32, n_bias=3, n_dark=3, dark_exptimes=(60.0,),
                      dark_temperatures=(-20.0,), n_flat=3, filters=("V", "I"), n_science=2,
                      fringe={"I": STRENGTH}, n_sky=5)
PEDESTAL = 50.0  # example-cam's pedestal step, the last of its science recipe


def _ccdflow(env: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ccdflow", *args], capture_output=True, text=True,
                          env=env, timeout=300)


@pytest.fixture(scope="module")
def night(plugin_env, tmp_path_factory):
    """(simulated night, OUT, report.json, env) after ``ccdflow night`` in a fresh process."""
    root = tmp_path_factory.mktemp("fringe-night")
    sim = simulate_night(root / "sim", SPEC, workers=2)
    for frame in sim.frames:  # the same pixels, written by example-cam
        fits.setval(frame.path, "INSTRUME", value="EXAMPLECAM-1")
    out = root / "out"
    done = _ccdflow(plugin_env, "night", str(sim.raw_dir), "--out", str(out),
                    "--caldb", str(out / "caldb.sqlite"), "--workers", "1")
    assert done.returncode == 0, done.stdout + done.stderr
    return sim, out, json.loads((out / "report.json").read_text()), plugin_env


def _truth(sim, name: str) -> dict:
    return next(f for f in json.loads((sim.truth_dir / "truth.json").read_text())["frames"]
                if f["name"] == name)


def _good(sim, name: str, mask) -> np.ndarray:
    """Pixels the truth can judge: no cosmic ray, saturation or bad pixel, not masked."""
    good = np.ones(SPEC.shape, bool) if mask is None else ~np.asarray(mask, bool)
    for truth in (f"cr_{name}.fits", f"sat_{name}.fits", "bpm.fits"):
        good &= fits.getdata(sim.truth_dir / truth) == 0
    return good


def test_the_fringe_master_is_built_from_the_sky_frames_and_registered(night):
    sim, out, report, env = night
    fringe = [m for m in report["masters"] if m["type"] == "fringe"]
    assert [m["status"] for m in fringe] == ["built"]  # I only: V has no night-sky frames
    master = fringe[0]
    assert sorted(Path(p).name for p in master["inputs"]) == [f"n1_sky_I_00{i}.fits" for i in range(1, 6)]
    listed = json.loads(_ccdflow(env, "caldb", "list", "--caldb", str(out / "caldb.sqlite"),
                                 "--type", "fringe", "--json").stdout)
    assert [(r["id"], r["sha256"], r["filter"], r["n_combined"]) for r in listed] == [
        (master["caldb_id"], master["sha256"], "I", 5)]
    # the master is the pattern per unit sky: the injected pattern times the strength
    pattern = fits.getdata(sim.truth_dir / "fringe_I.fits").astype(np.float64)
    ccd = read_product(master["path"])
    used = ~ccd.mask if ccd.mask is not None else np.ones(pattern.shape, bool)
    amplitude = np.sum(ccd.data[used] * pattern[used]) / np.sum(pattern[used] ** 2)
    assert amplitude == pytest.approx(STRENGTH, rel=0.02)
    assert abs(cards.MED.get(ccd.header)) < 1e-3  # finish_master: a zero-mean pattern


def test_science_frames_record_the_master_best_chose(night):
    sim, out, report, env = night
    master = next(m for m in report["masters"] if m["type"] == "fringe")
    science_i = [s for s in report["science"] if s["filter"] == "I"]
    assert len(science_i) == 2
    for entry in science_i:
        header = fits.getheader(entry["path"])
        assert header["CF_FRING"] == "DONE"
        assert header["CF_FRNGF"] == Path(master["path"]).name
        assert header["CF_FRNGS"] == master["sha256"]
        assert header["CF_FRNGI"] == master["caldb_id"] == entry["calibrations"]["fringe"]["id"]
        best = json.loads(_ccdflow(env, "caldb", "best", "--caldb", str(out / "caldb.sqlite"),
                                   "--type", "fringe", entry["raw"], "--json").stdout)
        assert best["selected"]["id"] == master["caldb_id"]
    for entry in [s for s in report["science"] if s["filter"] == "V"]:  # V does not fringe
        header = fits.getheader(entry["path"])
        assert header["CF_FRING"] == "SKIPPED" and "CF_FRNGF" not in header
        assert "fringe" not in entry["calibrations"]


def test_the_fitted_scale_matches_the_injected_fringes_and_none_are_left(night):
    """The injected fringes are ``fringe_rms_e`` times the unit-RMS pattern, in electrons before
    the flat; after the flat they are that over the gain in ADU. The master holds the pattern
    times STRENGTH per unit sky, so the fitted scale should be ``fringe_rms_e / gain / STRENGTH``.

    Two measures of what is left, on ``residual = product - pedestal - truth / gain``:

    - its projection on the known pattern (a fit of ``offset + a * pattern``): the matched filter
      for left-over fringes, whose noise is ~0.13 ADU for 390 ADU injected, so a scale wrong by
      0.1 % would show; the test asks for ``|a|`` within 4 of its standard errors;
    - its spread in units of the expected noise: Poisson and read noise of the frame plus the
      fringe master's own error (its UNCERT plane, times the scale), which the subtraction adds.
      The master flat's noise is left out: it is in the sky frames too, so subtracting the
      fringe frame removes it from the sky. A robust std near 1 says nothing else was added or
      left; the same measure before the subtraction is above 3.
    """
    sim, out, report, _ = night
    pattern = fits.getdata(sim.truth_dir / "fringe_I.fits").astype(np.float64)
    master = read_product(next(m for m in report["masters"] if m["type"] == "fringe")["path"])
    for entry in [s for s in report["science"] if s["filter"] == "I"]:
        name = Path(entry["raw"]).stem
        truth = _truth(sim, name)
        product = read_product(entry["path"])
        scale = product.header["CF_FRSCL"]
        injected_adu = truth["fringe_rms_e"] / sim.gain
        assert scale == pytest.approx(injected_adu / STRENGTH, rel=0.02)

        sky_e = fits.getdata(sim.truth_dir / f"sky_{name}.fits").astype(np.float64)
        good = _good(sim, name, product.mask)
        residual = product.data.astype(np.float64) - PEDESTAL - sky_e / sim.gain
        p, r = pattern[good], residual[good]
        design = np.column_stack([np.ones_like(p), p])
        (_, left), *_ = np.linalg.lstsq(design, r, rcond=None)
        error = np.std(r - left * p) / np.sqrt(np.sum((p - p.mean()) ** 2))
        assert abs(left) < 4 * error, f"{name}: {left:.3f} ADU of fringes left (+- {error:.3f})"
        assert abs(left) < 0.003 * injected_adu

        expected = np.sqrt((sky_e + sim.read_noise_e**2) / sim.gain**2
                           + (scale * master.uncertainty.array) ** 2)[good]
        robust = 1.4826 * np.median(np.abs(r / expected - np.median(r / expected)))
        assert 0.97 < robust < 1.05, f"{name}: residual / expected noise has robust std {robust:.3f}"
        before = (r + scale * master.data[good]) / expected
        assert np.std(before) > 3.0  # what the step removed was well above the noise


def test_ccdflow_plugins_lists_calibration_types(plugin_env):
    done = _ccdflow({**plugin_env, "COLUMNS": "200"}, "plugins")
    assert done.returncode == 0, done.stderr
    assert "calibration types" in done.stdout
    rows = {line.split("│")[1].strip(): line for line in done.stdout.splitlines() if "│" in line}
    assert rows["example"].split("│")[6].strip() == "fringe"
    assert rows["builtin_calibrations"].split("│")[6].strip() == "bias, dark, flat, bpm"


# -- the numerics and the step in this process, with ccdflow.testing's fixtures --------------------


def test_fit_fringe_recovers_a_scale_despite_a_noisy_template_and_stars(example):
    rng = np.random.default_rng(1)
    yy, xx = np.mgrid[0:256, 0:256]
    pattern = np.cos(2 * np.pi * (yy + 0.3 * xx) / 40.0)
    template = 0.02 * pattern + rng.normal(0.0, 0.005, pattern.shape)  # a master of few frames
    frame = 1000.0 + 20000.0 * 0.02 * pattern + rng.normal(0.0, 100.0, pattern.shape)
    frame[rng.integers(0, 256, 40), rng.integers(0, 256, 40)] += 5e4  # stars, cosmic rays
    scale, offset, blocks = example.fit_fringe(frame, template, np.ones(frame.shape, bool))
    assert scale == pytest.approx(20000.0, rel=0.01) and offset == pytest.approx(1000.0, abs=5)
    assert blocks < 32 * 32  # the blocks with a star were clipped
    naive, _, _ = example.fit_fringe(frame, template, np.ones(frame.shape, bool), block=1)
    assert naive < 0.97 * 20000.0  # per pixel, the template's noise biases the scale low


def test_unit_sky_refuses_a_frame_without_sky(example):
    from ccdflow.framework.engine.errors import UnprocessableInputError

    with pytest.raises(UnprocessableInputError, match="sky level of 0"):
        example.unit_sky(np.zeros((8, 8)), np.ones((8, 8), bool))


def test_the_step_skips_blue_filters_and_refuses_a_red_frame_without_a_master(
        example_manager, ccdflow_run_step, ccdflow_make_ccd, ccdflow_make_meta):
    from ccdflow.framework.engine.errors import UnprocessableInputError

    ccd = ccdflow_make_ccd(level=100.0)
    out = ccdflow_run_step("fringe", ccd, manager=example_manager,
                           meta=ccdflow_make_meta(filter="V", shape=ccd.shape))
    assert out.header["CF_FRING"] == "SKIPPED"
    with pytest.raises(UnprocessableInputError, match="no fringe frame"):
        ccdflow_run_step("fringe", ccd, manager=example_manager,
                         meta=ccdflow_make_meta(filter="I", shape=ccd.shape))

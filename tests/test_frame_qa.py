"""Per-frame quality figures against the simulator's truth: seeing, trailing, clouds, noise model;
carried by products, up-to-date entries and report.json; judged by the instrument's frame_qa."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from astropy.io import fits
from astropy.nddata import StdDevUncertainty

from ccdflow.framework import dq
from ccdflow.framework.builders import frame_qa
from ccdflow.framework.engine.frame_qa_limits import FrameQaLimits, flags
from ccdflow.framework.io.fitsio import read_product
from ccdflow.simulator import SimulationSpec
from ccdflow.testing.night import reduce_simulated_night

#: A normal night, seeing 4 px (+-15 % frame to frame), Gaussian and Moffat stars.
NORMAL = SimulationSpec(fwhm=4.0, n_science=2)
#: Small nights for what goes wrong: one filter, three frames.
SMALL = dict(shape=(160, 160), filters=("V",), n_science=3)


def truth_frames(run) -> dict[str, dict]:
    frames = json.loads((run.simulated.truth_dir / "truth.json").read_text())["frames"]
    return {f["name"]: f for f in frames}


@pytest.fixture(scope="module")
def normal(tmp_path_factory):
    return reduce_simulated_night(tmp_path_factory.mktemp("normal"), NORMAL, report=True)


def test_normal_night_measures_the_truth_and_flags_nothing(normal):
    truth = truth_frames(normal)
    assert len(normal.result.science) == 4
    for entry in normal.result.science:
        qa, frame = entry["qa"], truth[Path(entry["product"]).stem]
        assert list(qa) == list(frame_qa.KEYS)
        assert entry["qa_flags"] == [], entry["qa_flags"]
        assert qa["fwhm"] == pytest.approx(frame["fwhm"], rel=0.10), frame["psf"]
        assert qa["ellipticity"] < 0.1
        assert qa["n_stars"] >= 20 and qa["unit"] == "electron"
        assert qa["fwhm_arcsec"] is None  # no WCS, no pixel_scale: never assumed
        # flat-fielded sky in e-: the simulated rate times the exposure
        assert qa["sky"] == pytest.approx(frame["sky_rate"] * frame["exptime"], rel=0.02)
        assert 0.97 < qa["noise_ratio"] < 1.1
        with fits.open(entry["path"]) as hdul:
            bits = hdul["MASK"].data.astype(np.uint16)
            header = hdul[0].header
        assert qa["cosmic_pixels"] == np.count_nonzero(bits & dq.COSMIC_RAY) > 0
        assert qa["saturated_fraction"] == pytest.approx(np.count_nonzero(bits & dq.SATURATED) / bits.size,
                                                         rel=1e-5)
        assert qa["masked_fraction"] == pytest.approx(np.count_nonzero(bits) / bits.size, rel=1e-5)
        # the product keeps them (provenance, and the next run reads them back)
        assert frame_qa.read_cards(header) == {k: v for k, v in qa.items() if k != "fwhm_arcsec"}
        # its cost is in the report (bench/bench_frame_qa.py measures it; a first call in a
        # fresh checkout also compiles the kernels into numba's cache, so no bound here)
        assert entry["step_seconds"]["qa"] >= 0


def test_report_json_carries_every_figure_and_flag(normal):
    report = json.loads(normal.report.read_text())
    by_product = {e["product"]: e for e in normal.result.science}
    assert len(report["science"]) == 4
    for entry in report["science"]:
        assert entry["qa"] == by_product[entry["product"]]["qa"]
        assert set(entry["qa"]) == set(frame_qa.KEYS) and entry["qa_flags"] == []


def test_up_to_date_entries_read_their_figures_back_without_measuring(normal, monkeypatch):
    from ccdflow.pipeline.executor import SerialExecutor
    from ccdflow.pipeline.night import run_night
    from ccdflow.pipeline.spec import RunSpec, forget_environments

    def refuse(ccd):
        raise AssertionError("an up-to-date product was measured again")

    monkeypatch.setattr(frame_qa, "measure", refuse)
    spec = RunSpec(outdir=str(normal.out), caldb_url=normal.caldb_url, instrument="generic")
    try:
        with SerialExecutor() as executor:
            again = run_night(normal.raw_dir, spec, executor)
    finally:
        forget_environments()
    before = {e["product"]: e for e in normal.result.science}
    assert [e["status"] for e in again.science] == ["up-to-date"] * 4
    for entry in again.science:
        assert entry["qa"] == before[entry["product"]]["qa"] and entry["qa_flags"] == []


def test_a_product_without_cards_is_measured_from_its_file(normal, tmp_path):
    from ccdflow.pipeline.tasks import quality

    product = normal.products[0]
    old = tmp_path / product.name  # as made before ccdflow measured its frames
    with fits.open(product) as hdul:
        for card in frame_qa.CARDS.values():
            del hdul[0].header[card.keyword]
        hdul.writeto(old)
    config = SimpleNamespace(instrument=SimpleNamespace(frame_qa=FrameQaLimits()))
    got = quality(old, SimpleNamespace(binning=(1, 1)), config)
    entry = next(e for e in normal.result.science if Path(e["path"]) == product)
    assert got == {"qa": entry["qa"], "qa_flags": []}


def test_an_understated_uncertainty_plane_shows_in_the_noise_ratio(normal):
    ccd = read_product(normal.products[0])
    right = frame_qa.measure(ccd)
    assert right["noise_ratio"] == pytest.approx(1.0, abs=0.06)
    ccd.uncertainty = StdDevUncertainty(ccd.uncertainty.array * 0.7)
    wrong = frame_qa.measure(ccd)
    assert wrong["expected_noise"] == pytest.approx(0.7 * right["expected_noise"], rel=1e-3)
    assert wrong["noise_ratio"] == pytest.approx(right["noise_ratio"] / 0.7, rel=0.02)
    assert wrong["sky"] == right["sky"] and wrong["fwhm"] == right["fwhm"]
    assert flags(wrong, FrameQaLimits()) == [
        f"noise ratio {wrong['noise_ratio']:.3g} > 1.3 (frame_qa.noise_ratio_max)"]


def test_trailed_stars_are_flagged_for_ellipticity(tmp_path, caplog):
    caplog.set_level("WARNING", logger="ccdflow.night")
    run = reduce_simulated_night(tmp_path, SimulationSpec(**SMALL, trail=6.0))
    logged = [r.getMessage() for r in caplog.records if ": QA " in r.getMessage()]
    for entry in run.result.science:
        assert entry["qa"]["ellipticity"] > 0.35
        (flag,) = entry["qa_flags"]
        assert flag.startswith("ellipticity 0.") and flag.endswith("> 0.3 (frame_qa.ellipticity_max)")
        assert f"{Path(entry['raw']).name}: QA {flag}" in logged  # the run's log says it too


def test_a_frame_without_stars_is_flagged_for_clouds(tmp_path):
    run = reduce_simulated_night(tmp_path, SimulationSpec(**SMALL, n_stars=0, n_saturated_stars=0))
    for entry in run.result.science:
        qa = entry["qa"]
        assert qa["n_stars"] == 0 and qa["fwhm"] is None and qa["ellipticity"] is None
        assert entry["qa_flags"] == ["stars 0 < 5 (frame_qa.min_stars)"]
        assert 0.97 < qa["noise_ratio"] < 1.1  # the sky alone is still judged


def test_flags_name_figure_value_limit_and_setting():
    figures = {"fwhm": 6.1, "fwhm_arcsec": 1.525, "ellipticity": 0.1, "noise_ratio": 1.0,
               "n_stars": 3, "saturated_fraction": 0.02, "masked_fraction": 0.5}
    limits = FrameQaLimits(fwhm_max=5.0, fwhm_max_arcsec=1.5, masked_fraction_max=None)
    assert flags(figures, limits) == [
        "FWHM 6.1 px > 5 px (frame_qa.fwhm_max)",
        "FWHM 1.52 arcsec > 1.5 arcsec (frame_qa.fwhm_max_arcsec)",
        "stars 3 < 5 (frame_qa.min_stars)",
        "saturated fraction 0.02 > 0.01 (frame_qa.saturated_fraction_max)",
    ]
    # a figure not measured is not judged
    assert flags({**figures, "fwhm": None, "fwhm_arcsec": None, "n_stars": 9}, limits) == [
        "saturated fraction 0.02 > 0.01 (frame_qa.saturated_fraction_max)"]


def test_fwhm_in_arcsec_only_when_the_scale_is_known():
    wcs = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 152.6, "CRVAL2": -1.0,
                       "CRPIX1": 517.0, "CRPIX2": 488.0, "CD1_1": 6.688889e-05, "CD1_2": 0.0,
                       "CD2_1": 0.0, "CD2_2": 6.688889e-05, "CDELT1": 2.0, "CDELT2": 2.0})
    figures = {"fwhm": 4.0, "n_stars": 100}
    # EFOSC2's header: CD in degrees (ESO writes the binning in CDELT beside it)
    qa, _ = frame_qa.figures_and_flags(wcs, FrameQaLimits(), (2, 2), figures)
    assert qa["fwhm_arcsec"] == pytest.approx(4.0 * 0.2408, rel=1e-3)
    # the instrument's scale is per unbinned pixel and wins over the header
    qa, _ = frame_qa.figures_and_flags(wcs, FrameQaLimits(pixel_scale=0.12), (2, 2), figures)
    assert qa["fwhm_arcsec"] == pytest.approx(0.96)
    qa, found = frame_qa.figures_and_flags(fits.Header(), FrameQaLimits(fwhm_max_arcsec=0.1), (1, 1),
                                           figures)
    assert qa["fwhm_arcsec"] is None and found == []


def test_limits_come_from_the_instrument_and_a_night_file_without_redoing_products(tmp_path):
    from ccdflow.framework.engine.config import build
    from ccdflow.framework.engine.errors import ConfigError
    from ccdflow.framework.engine.plugins import get_plugin_manager

    manager = get_plugin_manager()
    night = tmp_path / "night.yaml"
    night.write_text("frame_qa: {fwhm_max: 2.5, min_stars: null}\n")
    plain = build(manager, instrument="generic")
    tonight = build(manager, instrument="generic", config_files=[night])
    limits = tonight.instrument.frame_qa
    assert (limits.fwhm_max, limits.min_stars, limits.ellipticity_max) == (2.5, None, 0.3)
    assert plain.instrument.frame_qa == FrameQaLimits()
    # thresholds judge the figures, never change a product: same ledger key
    assert tonight.recipe_hash("science") == plain.recipe_hash("science")
    night.write_text("frame_qa: {fwhm_maxx: 2.5}\n")
    with pytest.raises(ConfigError, match="fwhm_maxx"):
        build(manager, instrument="generic", config_files=[night])
